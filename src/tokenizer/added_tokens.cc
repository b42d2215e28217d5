#include "tokenizer/added_tokens.h"

namespace magnetar::tokenizer {

int32_t AddedTokenMatcher::child(int32_t node, uint8_t byte) const {
  for (const auto& [b, next] : nodes_[node].children) {
    if (b == byte) return next;
  }
  return -1;
}

void AddedTokenMatcher::add(std::string_view text, int32_t id) {
  if (text.empty()) return;
  int32_t node = root_[static_cast<uint8_t>(text[0])];
  if (node < 0) {
    node = static_cast<int32_t>(nodes_.size());
    nodes_.emplace_back();
    root_[static_cast<uint8_t>(text[0])] = node;
  }
  for (size_t i = 1; i < text.size(); ++i) {
    const auto byte = static_cast<uint8_t>(text[i]);
    int32_t next = child(node, byte);
    if (next < 0) {
      next = static_cast<int32_t>(nodes_.size());
      nodes_.emplace_back();
      nodes_[node].children.emplace_back(byte, next);
    }
    node = next;
  }
  nodes_[node].id = id;
}

std::optional<AddedTokenMatcher::Match> AddedTokenMatcher::find(std::string_view text,
                                                                size_t from) const {
  for (size_t begin = from; begin < text.size(); ++begin) {
    int32_t node = root_[static_cast<uint8_t>(text[begin])];
    std::optional<Match> longest;
    for (size_t i = begin + 1; node >= 0; ++i) {
      if (nodes_[node].id >= 0) longest = Match{begin, i, nodes_[node].id};
      if (i == text.size()) break;
      node = child(node, static_cast<uint8_t>(text[i]));
    }
    if (longest) return longest;
  }
  return std::nullopt;
}

}  // namespace magnetar::tokenizer
