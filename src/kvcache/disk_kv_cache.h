// The disk KV cache (`--kv-disk-dir`, `--kv-disk-space-mb`): session checkpoints on disk, so that
// a long prompt prefix survives the live session's replacement and server restarts without being
// prefilled again (kv-cache.md; docs/kv-cache.md describes the format and how it differs from ds4).
//
// An entry is one checkpoint: the tokens a session had processed, the key text (the rendered text
// of those tokens, or a client-visible transcript, see KeyKind), the session payload
// (engine::Session::save()), and the tool-call records whose DSML block occurs in the key text.
// A server uses it at its save points (checkpoint_policy.h says when):
//
//   DiskKvCache cache({.dir = dir, .budget_bytes = mb << 20, .model = engine.identity(),
//                      .report = log_fn});
//   // a request missed the live session:
//   if (auto hit = cache.lookup_text(prompt_text); hit && policy.may_load(hit->token_count)) {
//     LoadedEntry e = cache.load(*hit);     // checksum verified; throws KvCacheError if refused
//     session.load(e.payload);              // its tokens are now the session's (on SessionError:
//                                           // cache.erase(e.info.name) and prefill cold)
//     tool_map.remember(e.tool_calls);
//     if (policy.consume_after_load(e.tokens.size())) cache.erase(e.info.name);
//   }
//   // at a save point:
//   cache.store({.tokens = t, .key_text = text, .payload = session.save(),
//                .tool_calls = tool_map.records_within(text), .reason = SaveReason::kEvict});
//
// Guarantees:
//  * Nothing damaged or foreign is ever loaded: open() indexes files by their header and metadata
//    checksum, load() verifies the whole-file SHA-256, the model identity and the name. A damaged
//    file is reported and deleted; another model's or format version's file is reported and kept
//    (it counts against the budget and is evicted first).
//  * Writes are crash-safe (temp file, fsync, rename, directory fsync): after a crash a name holds
//    the old file or the complete new one. A failed write (disk full, file size limit, I/O error)
//    throws KvCacheError and leaves every existing entry as it was.
//  * The directory's files stay within the budget, except transiently by the one file being
//    written (old entries are evicted only after the new one is safely in place).
//  * Every member may be called from any thread. Disk reads and writes run outside the internal
//    lock, so a stats() or lookup() call is not held up by a large store(). One process owns a
//    directory (an flock on magnetar-kvcache.lock; a second open fails with a clear error).
//  * Lookups are served from memory; only load() and find_tool_calls() read entry files.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "kvcache/entry_format.h"
#include "kvcache/file_io.h"
#include "kvcache/kvcache_error.h"
#include "kvcache/tool_id_map.h"

namespace magnetar::kvcache {

// Something the cache found or did on its own that an operator should see in the log.
struct CacheReport {
  enum class Kind {
    kDamaged,     // a damaged entry file: deleted
    kUnusable,    // an intact file of another model or format version: kept, never loaded
    kUnreadable,  // an entry file that could not be read (I/O error, permissions): skipped
    kStaleTemp,   // a temp file of an interrupted write: deleted
    kEvicted,     // an entry deleted to keep the budget
    kWarning,     // anything else worth logging (usage block reset, directory permissions, …)
  };
  Kind kind;
  std::string file;  // the file name within the directory; empty when about the directory
  std::string message;
};
using ReportFn = std::function<void(const CacheReport&)>;

struct CacheOptions {
  std::filesystem::path dir{};
  uint64_t budget_bytes = uint64_t{4096} << 20;  // --kv-disk-space-mb × 2^20
  ModelIdentity model{};                         // engine::Engine::identity()
  // Called for each report, never while the cache's lock is held; may be empty.
  ReportFn report{};
  // Unix seconds; empty: the system clock. Tests move time to exercise hit decay.
  std::function<int64_t()> clock{};
};

struct EntryInfo {
  std::string name;  // file name within the directory
  uint64_t token_count = 0;
  uint64_t text_bytes = 0;
  uint64_t file_bytes = 0;
  SaveReason reason = SaveReason::kUnknown;
  KeyKind key_kind = KeyKind::kTokenText;
  int64_t created = 0;    // Unix seconds
  int64_t last_used = 0;  // Unix seconds
  uint64_t hits = 0;
  uint64_t tool_calls = 0;
};

struct LoadedEntry {
  EntryInfo info;                // as of the load (hit count and last use updated)
  std::vector<int32_t> tokens;   // the state's tokens: authoritative over any lookup key
  std::string key_text;          // the entry's key text
  std::vector<uint8_t> payload;  // for engine::Session::load()
  std::vector<ToolCallRecord> tool_calls;
};

struct StoreRequest {
  std::span<const int32_t> tokens{};  // what the payload's state has processed
  std::string_view key_text{};        // the rendered text of the tokens, or a visible transcript
  std::span<const uint8_t> payload{};
  std::span<const ToolCallRecord> tool_calls{};  // ToolIdMap::records_within(key_text)
  SaveReason reason = SaveReason::kUnknown;
  KeyKind key_kind = KeyKind::kTokenText;
};

struct StoreResult {
  enum class Status {
    kWritten,        // a new entry is in place
    kAlreadyCached,  // an identical entry (same tokens and key text) holds these tool calls already
    kOverBudget,     // the entry alone would exceed the budget: nothing written
  };
  Status status;
  EntryInfo entry;                   // the written or existing entry (kWritten, kAlreadyCached)
  uint64_t bytes = 0;                // the entry's file size (also when over budget)
  std::vector<std::string> evicted;  // names deleted to make room, in order
};

struct CacheStats {
  uint64_t entries = 0;         // usable entries
  uint64_t unusable_files = 0;  // other models' or versions' files
  uint64_t bytes = 0;           // every counted file
  uint64_t budget_bytes = 0;
  uint64_t lookups = 0, lookup_hits = 0;
  uint64_t loads = 0, load_failures = 0;
  uint64_t stores = 0, store_failures = 0, stored_bytes = 0;
  uint64_t evictions = 0;
};

class DiskKvCache {
 public:
  // Creates the directory (mode 0700) if needed, takes the directory lock, deletes temp files of
  // interrupted writes, indexes the entry files (reporting and skipping anything unusable) and
  // evicts down to the budget. Throws KvCacheError when the directory cannot be created, read,
  // written or locked, or the budget is 0.
  explicit DiskKvCache(CacheOptions options);
  DiskKvCache(const DiskKvCache&) = delete;
  DiskKvCache& operator=(const DiskKvCache&) = delete;

  // The entry whose tokens are the longest prefix of `tokens` (ties: the newest), if any.
  std::optional<EntryInfo> lookup(std::span<const int32_t> tokens) const;
  // The entry whose key text is the longest byte prefix of `text` (ties: the newest, then the one
  // with more tokens), if any: how a request finds a checkpoint when its rendering tokenizes the
  // boundary differently (kv-cache.md §10).
  std::optional<EntryInfo> lookup_text(std::string_view text) const;
  // Whether an entry with exactly these tokens and key text exists.
  bool contains(std::span<const int32_t> tokens, std::string_view key_text) const;

  // Reads and verifies the entry, and counts a hit. Throws KvCacheError when the entry is gone
  // (evicted since the lookup) or refused; a refused file (damaged: checksum, size, structure) is
  // reported, dropped from the index and deleted, an unreadable one is reported and dropped.
  LoadedEntry load(const EntryInfo& entry);

  // Writes an entry crash-safely, then evicts others to keep the budget. An identical entry (same
  // tokens and key text) is rewritten only when the request brings tool calls it lacks (the file
  // then holds both); otherwise its last use is refreshed. Throws KvCacheError (disk full, file
  // size limit, I/O error, empty tokens or payload), leaving the cache and every entry as before.
  StoreResult store(const StoreRequest& request);

  // Deletes an entry (the consume rule, or a payload the engine refused). Returns false when it
  // was not in the cache.
  bool erase(const std::string& name);

  // The tool-call records, from every entry, for those of `ids` that any entry holds: how exact
  // replay survives a restart (server-api.md §14). Reads only the files that hold a wanted id.
  std::vector<ToolCallRecord> find_tool_calls(std::span<const std::string> ids);

  std::vector<EntryInfo> entries() const;  // usable entries, newest first
  CacheStats stats() const;
  const std::filesystem::path& dir() const { return options_.dir; }

 private:
  struct Entry {
    EntryInfo info;
    std::vector<int32_t> tokens;
    std::string key_text;
    std::vector<std::string> tool_ids;
  };
  struct UnusableFile {
    uint64_t bytes = 0;
    int64_t modified = 0;
  };
  class PendingReports;

  // What precedes an entry file's payload, verified against the metadata checksum and the name.
  struct FileHead {
    EntryHeader header;
    std::optional<EntryUsage> usage;  // empty after a torn usage rewrite
    EntryMetadata metadata;
    std::vector<uint8_t> prefix;          // the header and usage bytes
    std::vector<uint8_t> metadata_bytes;  // as stored, for the whole-file checksum
  };

  int64_t now() const;
  void index_directory(PendingReports& reports);
  void index_file(const std::string& name, PendingReports& reports);
  // Throws EntryFormatError for a file that is not a usable entry, KvCacheError when unreadable.
  FileHead read_head(int fd, const std::string& name, uint64_t size) const;
  Entry make_entry(const std::string& name, const FileHead& head, uint64_t file_bytes) const;
  // Handles a file that failed verification after it was indexed: damaged → deleted (if `fd` is
  // still the file under that name), another model or version → kept as unusable, unreadable →
  // dropped from the index. Reports it.
  void refuse_file(const std::string& name, int fd, const KvCacheError& error,
                   PendingReports& reports);
  void touch_usage(int fd, const std::string& name, const EntryUsage& usage,
                   PendingReports& reports) const;
  // Callers of the following hold mu_.
  void add_entry_locked(Entry entry);
  void remove_entry_locked(const std::string& name);
  void evict_locked(const std::string& protected_name, std::vector<std::string>& evicted,
                    PendingReports& reports);

  CacheOptions options_;
  DirectoryLock lock_;
  mutable std::mutex mu_;
  std::map<std::string, Entry> entries_;
  std::map<std::string, UnusableFile> unusable_;
  std::unordered_map<std::string, std::vector<std::string>> tool_index_;  // id → entry names
  uint64_t total_bytes_ = 0;
  uint64_t temp_counter_ = 0;
  mutable CacheStats stats_;
};

}  // namespace magnetar::kvcache
