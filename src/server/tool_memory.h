// The exact-replay memory for tool calls (server-api.md §14): tool-call id → the DSML block the
// model actually sampled for that turn.
//
// When a client sends an assistant turn back with its tool calls, re-rendering them canonically
// may not reproduce the bytes the model wrote (parameter spacing, JSON formatting), and the live
// state would no longer be a prefix of the new prompt. If every id of the turn maps to the same
// remembered block, the prompt uses that block verbatim instead (exact_replay.h).
//
// Ids are 128 random bits from OpenSSL's CSPRNG (never a guessable fallback: ds4's is one of its
// §19 weaknesses) and are unique in the memory. The memory is bounded by an id count and a byte
// budget; the least recently used id goes first, and a lookup refreshes recency. A disk cache
// stores the entries whose block occurs in a checkpoint's text and adds them back on load
// (kv-cache.md §7). Thread-safe.
#pragma once

#include <cstddef>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace magnetar::server {

class ToolMemory {
 public:
  ToolMemory(size_t max_ids, size_t max_bytes);

  // A fresh id: `prefix` + 32 lowercase hex digits, not in the memory. Throws std::runtime_error
  // when the random generator fails.
  std::string new_id(std::string_view prefix) const;

  // Maps every id of one assistant turn to its sampled DSML block.
  void remember(const std::vector<std::string>& ids, const std::string& dsml);

  // The block all `ids` map to, when they all map to the same one (and refreshes them); nullopt
  // when any id is unknown or they differ.
  std::optional<std::string> block_for(const std::vector<std::string>& ids);

  bool contains(const std::string& id) const;

  // The (id, block) entries whose block occurs in `text`: what a disk checkpoint of that text
  // should carry.
  std::vector<std::pair<std::string, std::string>> entries_in(std::string_view text) const;

  size_t size() const;
  size_t bytes() const;

 private:
  struct Entry {
    std::shared_ptr<const std::string> block;  // shared by the ids of one turn
    std::list<std::string>::iterator recency;
  };
  void evict_to_limits();
  void erase(std::unordered_map<std::string, Entry>::iterator it);

  const size_t max_ids_;
  const size_t max_bytes_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, Entry> entries_;
  std::list<std::string> recency_;  // most recent first
  size_t bytes_ = 0;                // id bytes + each distinct block's bytes once
};

}  // namespace magnetar::server
