// Byte-pair merging of one pre-tokenized piece.
//
// A piece starts as one token per byte (every byte of the GPT-2 alphabet is a token of its own).
// Then, repeatedly, the adjacent pair with the lowest merge rank is replaced by the token of its
// concatenation (ties: the leftmost pair), until no adjacent pair has a rank. This is Hugging
// Face's BPE without dropout, continuing-subword prefix or byte fallback, which DeepSeek's
// tokenizer.json does not use. The work is O(n log n) in the piece length (a linked list of symbols
// and a heap of candidate pairs), so a run of 100,000 spaces, which is one piece, costs no more
// than its length suggests. Results for pieces of up to 64 bytes are cached per thread.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace magnetar::tokenizer {

class BpeMerger {
 public:
  // `merges` is tokenizer.ggml.merges ("left right" in alphabet characters, rank = index) and
  // `ids` the id of each string of tokenizer.ggml.tokens. Throws std::runtime_error when a merge
  // is malformed or names a string that is not a token, or a byte has no token.
  BpeMerger(std::span<const std::string> merges,
            const std::unordered_map<std::string_view, int32_t>& ids);

  // Appends the ids of `piece` (raw bytes, not alphabet characters) to `out`.
  void encode(std::string_view piece, std::vector<int32_t>& out) const;

  // The token of a single byte.
  int32_t byte_id(uint8_t byte) const { return byte_ids_[byte]; }

 private:
  struct Merge {
    int32_t rank;
    int32_t result;
  };
  static uint64_t pair_key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
           static_cast<uint32_t>(right);
  }
  // The merge table is probed for every adjacent pair of every piece, which makes it the hot spot
  // of encoding: an open-addressing table (linear probing, at most half full) costs about one
  // cache miss per probe, where a node-based std::unordered_map costs several.
  struct Slot {
    uint64_t key = kEmpty;
    Merge merge{};
  };
  static constexpr uint64_t kEmpty = ~uint64_t{0};  // no token pair has two ids of 2^32-1
  size_t slot_index(uint64_t key) const {
    return static_cast<size_t>((key * 0x9E3779B97F4A7C15ull) >> shift_);
  }
  void insert(uint64_t key, Merge merge);
  // encode() without the cache.
  void merge(std::string_view piece, std::vector<int32_t>& out) const;

  // Pieces longer than this (whitespace runs, long words) are rare and merged every time; the
  // cache is emptied when it holds this many pieces, which bounds it to a few MB per thread.
  static constexpr size_t kMaxCachedPiece = 64;
  static constexpr size_t kMaxCacheEntries = 1 << 16;
  const Merge* find(uint64_t key) const;

  std::array<int32_t, 256> byte_ids_{};
  std::vector<Slot> slots_;
  int shift_ = 64;
  uint64_t instance_;
};

}  // namespace magnetar::tokenizer
