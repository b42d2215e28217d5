// The disk KV cache behind `magnetar serve --kv-disk-dir` (kv-cache.md; docs/kv-cache.md): the
// StateStore hooks (state_store.h) carried out with kvcache::DiskKvCache for the files and
// kvcache::CheckpointPolicy for when to write and what may load.
//
//   restore               the longest entry whose key text is a byte prefix of the prompt and that
//                         the policy lets load (≥ min tokens): its file is verified, the engine
//                         loads the payload, its tool-call records join the server's ToolIdMap, and
//                         an entry longer than cold-max is consumed (deleted: the live session owns
//                         that state now). A file refused on the way (damaged, unreadable, a
//                         payload the engine rejects) is reported, deleted where it is damaged, and
//                         the next best entry is tried; with none, the request is prefilled from
//                         nothing.
//   cold_save_point       CheckpointPolicy::cold_save_length (the stable part of a new prompt)
//   continued_save_point  the next multiple of the continued step at which a save is due
//   save                  every reason: only states of ≥ min tokens; the entry carries the
//                         tool-call records whose sampled block occurs in its key text
//   recall_tool_ids       finds the ids in every entry's records and adds them to the ToolIdMap
//
// A failed write (disk full, file size limit, I/O error) or an entry larger than the budget is
// logged and counted and changes nothing else: the request goes on. The cache's own reports
// (damaged, unusable and stale files, evictions, warnings) become one log line each, naming the
// file, and count in /metrics (magnetar_kv_disk_*, metrics.h) with the hits, misses, saves and the
// directory's usage.
//
// Calls come from the scheduler thread, except recall_tool_ids() (handler threads); the cache,
// the ToolIdMap and Metrics are thread-safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/engine.h"
#include "kvcache/checkpoint_policy.h"
#include "kvcache/disk_kv_cache.h"
#include "kvcache/tool_id_map.h"
#include "server/metrics.h"
#include "server/state_store.h"

namespace magnetar::server {

struct DiskStoreOptions {
  std::filesystem::path dir{};                   // --kv-disk-dir
  uint64_t budget_bytes = uint64_t{4096} << 20;  // --kv-disk-space-mb × 2^20
  kvcache::CheckpointOptions checkpoints{};      // --kv-cache-*
};

class DiskStateStore final : public StateStore {
 public:
  // Opens the directory (created if missing; indexed, evicted to the budget, locked for this
  // process). `tools` is the server's exact-replay map, null when replay is off (then no records
  // are written or read). Throws kvcache::KvCacheError when the directory cannot be used (not a
  // directory, not writable, owned by another process), std::invalid_argument for inconsistent
  // checkpoint options.
  DiskStateStore(const DiskStoreOptions& options, const engine::Engine& engine,
                 kvcache::ToolIdMap* tools, Metrics& metrics);

  std::optional<size_t> restore(std::string_view prompt_text, engine::Session& session) override;
  std::optional<int64_t> cold_save_point(std::span<const int32_t> prompt) override;
  std::optional<int64_t> continued_save_point(int64_t processed) override;
  void save(kvcache::SaveReason reason, const engine::Session& session, std::string_view key_text,
            kvcache::KeyKind kind) override;
  void recall_tool_ids(const std::vector<std::string>& ids) override;

  kvcache::CacheStats stats() const { return cache_.stats(); }
  std::vector<kvcache::EntryInfo> entries() const { return cache_.entries(); }

 private:
  // Loads one entry into the session; nullopt (the entry refused and dealt with) when it fails.
  std::optional<size_t> load_into(const kvcache::EntryInfo& hit, std::string_view prompt_text,
                                  engine::Session& session);
  void erase(const std::string& name);
  void on_report(const kvcache::CacheReport& report);
  void publish_usage();

  kvcache::CheckpointPolicy policy_;
  kvcache::ToolIdMap* tools_;
  Metrics& metrics_;
  int32_t user_token_, assistant_token_;
  std::string dir_;  // for log lines
  // Last: its constructor already reports through on_report(), which uses the members above.
  kvcache::DiskKvCache cache_;
};

}  // namespace magnetar::server
