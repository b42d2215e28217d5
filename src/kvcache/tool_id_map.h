// The exact-replay memory for tool calls (server-api.md §14): API tool-call id → the DSML block the
// model sampled for the turn that made the call, byte for byte.
//
// When a client sends a tool call back in its history, rendering the canonical DSML would differ
// from what the model actually produced (spacing, parameter order, string escapes), and the live or
// cached state, which holds the sampled bytes, would no longer be a prefix of the new prompt. The
// server therefore remembers every id it hands out with the sampled block and renders that block
// verbatim when all ids of a replayed turn are known and agree.
//
// Ids are unguessable (16 bytes of OpenSSL's RAND_bytes; there is no weaker fallback, unlike
// ds4), because a client that guesses an id could make the server replay a block it never saw. The
// map is bounded by an id count and by accounted bytes, and forgets the least recently used id
// first (a lookup counts as a use). Blocks shared by several ids are stored once. Disk cache
// entries carry the records whose block occurs in their key text (records_within), so replay
// survives a restart. All members are safe to call from several threads.
#pragma once

#include <cstddef>
#include <list>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace magnetar::kvcache {

struct ToolCallRecord {
  std::string id;    // as sent to the client, e.g. "call_" + 32 hex digits
  std::string dsml;  // the exact sampled tool-call block
  bool operator==(const ToolCallRecord&) const = default;
};

struct ToolIdMapLimits {
  size_t max_ids = 100000;        // --tool-memory-max-ids
  size_t max_bytes = 512u << 20;  // id and block bytes plus a fixed cost per id and per block
};

class ToolIdMap {
 public:
  // What each id and each distinct block costs beyond its bytes (the map's own bookkeeping), so a
  // flood of tiny ids is bounded by max_bytes too.
  static constexpr size_t kOverheadBytes = 64;

  explicit ToolIdMap(ToolIdMapLimits limits = {});

  // A fresh id: `prefix` followed by 32 lowercase hex digits from 16 random bytes, different from
  // every id the map holds and from `taken` (the other ids of the same turn). Throws
  // std::runtime_error when the random generator fails.
  std::string new_id(std::string_view prefix, std::span<const std::string> taken = {}) const;

  // Maps every id to `dsml` (all calls of one turn share the turn's block), as the most recent
  // uses. An id already mapped is moved to the new block. Returns false, remembering nothing, when
  // `dsml` is empty, an id is empty, or the block alone exceeds max_bytes.
  bool remember(std::span<const std::string> ids, std::string_view dsml);
  // The same for records loaded from the disk cache (each record may name its own block).
  void remember(std::span<const ToolCallRecord> records);

  // The block of `id`, counting as a use.
  std::optional<std::string> find(std::string_view id);
  // Whether `id` is mapped (not a use): how a server tells which ids to look for on disk.
  bool contains(std::string_view id) const;
  // The block to replay for a turn whose calls have these ids: present only when every id is known
  // and all map to the same block (otherwise the caller renders canonical DSML). Counts as a use.
  std::optional<std::string> replay_block(std::span<const std::string> ids);

  // Every record whose block occurs byte for byte in `text`, most recently used first: what a disk
  // cache entry keyed by `text` stores.
  std::vector<ToolCallRecord> records_within(std::string_view text) const;

  size_t size() const;
  size_t bytes() const;
  ToolIdMapLimits limits() const { return limits_; }

 private:
  struct IdEntry {
    std::list<std::string>::iterator recency;  // position in recency_ (front: most recent)
    const std::string* block;                  // key in blocks_
  };

  // Callers hold mu_.
  const std::string* acquire_block(std::string_view dsml);
  void release_block(const std::string* block);
  void put(const std::string& id, std::string_view dsml);
  void erase_id(std::unordered_map<std::string, IdEntry>::iterator it);
  void enforce_limits();

  ToolIdMapLimits limits_;
  mutable std::mutex mu_;
  std::list<std::string> recency_;
  std::unordered_map<std::string, IdEntry> ids_;
  std::unordered_map<std::string, size_t> blocks_;  // block → number of ids mapped to it
  size_t bytes_ = 0;
};

}  // namespace magnetar::kvcache
