// Finding added tokens (<｜User｜>, <think>, ｜DSML｜, …) in text, the way Hugging Face does before
// any other processing (official-encoding.md §5.2): leftmost-longest, non-overlapping. At the
// first position where some token starts, the longest token starting there wins; the scan
// resumes after it. None of DeepSeek's added tokens strips neighbouring whitespace or requires a
// word boundary, so a plain string match is the whole rule.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

namespace magnetar::tokenizer {

class AddedTokenMatcher {
 public:
  struct Match {
    size_t begin;
    size_t end;
    int32_t id;
  };

  // Adds a token; an empty string can never match and is ignored.
  void add(std::string_view text, int32_t id);

  // The leftmost-longest occurrence of any token in text[from..], or nullopt.
  std::optional<Match> find(std::string_view text, size_t from) const;

 private:
  // A byte trie. The root's children are a 256-entry table because find() consults it at every
  // position of the text; deeper nodes have few children.
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> children;
    int32_t id = -1;  // the token ending here, or -1
  };
  int32_t child(int32_t node, uint8_t byte) const;

  std::array<int32_t, 256> root_{[] {
    std::array<int32_t, 256> a{};
    a.fill(-1);
    return a;
  }()};
  std::vector<Node> nodes_;
};

}  // namespace magnetar::tokenizer
