#include "tokenizer/bpe.h"

#include <algorithm>
#include <atomic>
#include <functional>
#include <stdexcept>

#include "tokenizer/byte_alphabet.h"

namespace magnetar::tokenizer {
namespace {

// Numbers the mergers, so that a thread's piece cache never serves a merger it was not made for
// (an address could be reused by a later tokenizer).
std::atomic<uint64_t> next_instance{0};

}  // namespace

BpeMerger::BpeMerger(std::span<const std::string> merges,
                     const std::unordered_map<std::string_view, int32_t>& ids)
    : instance_(next_instance.fetch_add(1) + 1) {
  auto lookup = [&](std::string_view text) -> int32_t {
    auto it = ids.find(text);
    return it == ids.end() ? -1 : it->second;
  };
  for (int b = 0; b < 256; ++b) {
    const std::string symbol = byte_to_symbol(static_cast<uint8_t>(b));
    byte_ids_[b] = lookup(symbol);
    if (byte_ids_[b] < 0) {
      throw std::runtime_error("tokenizer.ggml.tokens has no token for byte " + std::to_string(b) +
                               " ('" + symbol + "'), so some text could not be encoded");
    }
  }
  // A power of two at least twice the number of merges keeps probe chains short.
  size_t capacity = 2;
  shift_ = 63;
  while (capacity < 2 * merges.size()) {
    capacity *= 2;
    --shift_;
  }
  slots_.assign(capacity, Slot{});
  std::string joined;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const std::string& merge = merges[rank];
    const size_t space = merge.find(' ');
    auto fail = [&](const std::string& why) {
      throw std::runtime_error("tokenizer.ggml.merges[" + std::to_string(rank) + "] '" + merge +
                               "' " + why);
    };
    if (space == std::string::npos || space == 0 || space + 1 == merge.size() ||
        merge.find(' ', space + 1) != std::string::npos) {
      fail("is not two strings separated by one space");
    }
    const std::string_view left = std::string_view(merge).substr(0, space);
    const std::string_view right = std::string_view(merge).substr(space + 1);
    joined.assign(left).append(right);
    const int32_t left_id = lookup(left);
    const int32_t right_id = lookup(right);
    const int32_t result = lookup(joined);
    if (left_id < 0 || right_id < 0 || result < 0) fail("names a string that is not a token");
    // A repeated pair takes its last rank, as Hugging Face's merge table does.
    insert(pair_key(left_id, right_id), Merge{static_cast<int32_t>(rank), result});
  }
}

void BpeMerger::insert(uint64_t key, Merge merge) {
  size_t i = slot_index(key);
  while (slots_[i].key != kEmpty && slots_[i].key != key) i = (i + 1) & (slots_.size() - 1);
  slots_[i] = {key, merge};
}

const BpeMerger::Merge* BpeMerger::find(uint64_t key) const {
  for (size_t i = slot_index(key);; i = (i + 1) & (slots_.size() - 1)) {
    if (slots_[i].key == key) return &slots_[i].merge;
    if (slots_[i].key == kEmpty) return nullptr;
  }
}

void BpeMerger::encode(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.size() == 1) {
    out.push_back(byte_ids_[static_cast<uint8_t>(piece[0])]);
    return;
  }
  if (piece.size() > kMaxCachedPiece) {
    merge(piece, out);
    return;
  }
  // Words repeat, so most pieces were merged before. The cache belongs to the thread, which keeps
  // encode() lock-free; it is tagged with the merger it serves and emptied when it grows too big.
  struct Cache {
    uint64_t owner = 0;
    std::unordered_map<std::string, std::vector<int32_t>> ids;
  };
  thread_local Cache cache;
  if (cache.owner != instance_ || cache.ids.size() >= kMaxCacheEntries) {
    cache.owner = instance_;
    cache.ids.clear();
  }
  auto [it, inserted] = cache.ids.try_emplace(std::string(piece));
  if (inserted) merge(piece, it->second);
  out.insert(out.end(), it->second.begin(), it->second.end());
}

void BpeMerger::merge(std::string_view piece, std::vector<int32_t>& out) const {
  struct Symbol {
    int32_t id;
    int32_t prev;  // -1: none
    int32_t next;  // -1: none
  };
  // A candidate merge of symbols[left] with its successor, valid while both still hold the ids
  // it was made from.
  struct Candidate {
    int32_t rank;
    int32_t left;
    int32_t left_id;
    int32_t right_id;
    int32_t result;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : left > o.left;
    }
  };
  const auto n = static_cast<int32_t>(piece.size());
  // Reused between calls: most pieces are short, and allocating per piece would cost more than
  // merging them.
  thread_local std::vector<Symbol> symbols;
  thread_local std::vector<Candidate> heap;
  symbols.resize(n);
  heap.clear();
  for (int32_t i = 0; i < n; ++i) {
    symbols[i] = {byte_ids_[static_cast<uint8_t>(piece[i])], i - 1, i + 1 < n ? i + 1 : -1};
  }
  auto consider = [&](int32_t left) {
    const int32_t right = symbols[left].next;
    if (right < 0) return;
    const Merge* merge = find(pair_key(symbols[left].id, symbols[right].id));
    if (merge == nullptr) return;
    heap.push_back({merge->rank, left, symbols[left].id, symbols[right].id, merge->result});
    std::push_heap(heap.begin(), heap.end(), std::greater<>());
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<>());
    const Candidate c = heap.back();
    heap.pop_back();
    Symbol& left = symbols[c.left];
    if (left.id != c.left_id || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    if (right.id != c.right_id) continue;
    left.id = c.result;
    right.id = -1;  // dead: no candidate names it as its left side
    left.next = right.next;
    if (left.next >= 0) symbols[left.next].prev = c.left;
    if (left.prev >= 0) consider(left.prev);
    consider(c.left);
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next) out.push_back(symbols[i].id);
}

}  // namespace magnetar::tokenizer
