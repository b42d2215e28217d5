#include "server/metrics.h"

#include <fmt/format.h>

namespace magnetar::server {

void Metrics::count_request(const std::string& endpoint, int status) {
  std::lock_guard lock(mutex_);
  ++requests_[{endpoint, status}];
}

void Metrics::count_rejected(const std::string& reason) {
  std::lock_guard lock(mutex_);
  ++rejected_[reason];
}

void Metrics::count_usage(int64_t prompt, int64_t cached, int64_t completion) {
  std::lock_guard lock(mutex_);
  prompt_tokens_ += prompt;
  cached_tokens_ += cached;
  completion_tokens_ += completion;
}

void Metrics::count_placement(const std::string& source) {
  std::lock_guard lock(mutex_);
  ++placements_[source];
}

void Metrics::count_cancelled() {
  std::lock_guard lock(mutex_);
  ++cancelled_;
}

void Metrics::count_step(int64_t prefill_tokens, int64_t decode_tokens, int64_t batch,
                         double seconds) {
  std::lock_guard lock(mutex_);
  ++steps_;
  batch_items_ += batch;
  prefill_tokens_ += prefill_tokens;
  decode_tokens_ += decode_tokens;
  const double total = static_cast<double>(prefill_tokens + decode_tokens);
  if (total > 0) {
    prefill_seconds_ += seconds * static_cast<double>(prefill_tokens) / total;
    decode_seconds_ += seconds * static_cast<double>(decode_tokens) / total;
  }
}

void Metrics::set_queue(int64_t depth, int64_t busy_slots, int64_t slots) {
  std::lock_guard lock(mutex_);
  queue_depth_ = depth;
  busy_slots_ = busy_slots;
  slots_ = slots;
}

void Metrics::count_disk_restore(int64_t tokens) {
  std::lock_guard lock(mutex_);
  ++disk_hits_;
  disk_loaded_tokens_ += tokens;
}

void Metrics::count_disk_miss() {
  std::lock_guard lock(mutex_);
  ++disk_misses_;
}

void Metrics::count_disk_save(std::string_view reason) {
  std::lock_guard lock(mutex_);
  auto it = disk_saves_.find(reason);
  if (it == disk_saves_.end()) it = disk_saves_.emplace(std::string(reason), 0).first;
  ++it->second;
}

void Metrics::count_disk_save_failure() {
  std::lock_guard lock(mutex_);
  ++disk_save_failures_;
}

void Metrics::count_disk_eviction() {
  std::lock_guard lock(mutex_);
  ++disk_evictions_;
}

void Metrics::count_disk_damaged() {
  std::lock_guard lock(mutex_);
  ++disk_damaged_;
}

void Metrics::set_disk_usage(uint64_t bytes, uint64_t budget_bytes, uint64_t entries) {
  std::lock_guard lock(mutex_);
  disk_enabled_ = true;
  disk_bytes_ = bytes;
  disk_budget_bytes_ = budget_bytes;
  disk_entries_ = entries;
}

std::string Metrics::render() const {
  std::lock_guard lock(mutex_);
  std::string out;
  auto head = [&](const char* name, const char* type, const char* help) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  };
  // A metric without labels: its head and its one value.
  auto scalar = [&](const char* name, const char* type, const char* help, const auto& value) {
    head(name, type, help);
    out += fmt::format("{} {}\n", name, value);
  };
  head("magnetar_requests_total", "counter", "HTTP requests answered, by endpoint and status.");
  for (const auto& [key, n] : requests_) {
    out += fmt::format("magnetar_requests_total{{endpoint=\"{}\",status=\"{}\"}} {}\n", key.first,
                       key.second, n);
  }
  head("magnetar_requests_rejected_total", "counter",
       "Generation requests refused before running (queue full, shutting down).");
  for (const auto& [reason, n] : rejected_) {
    out += fmt::format("magnetar_requests_rejected_total{{reason=\"{}\"}} {}\n", reason, n);
  }
  scalar("magnetar_generations_cancelled_total", "counter",
         "Generations stopped because the client went away.", cancelled_);
  scalar("magnetar_prompt_tokens_total", "counter", "Prompt tokens of served requests.",
         prompt_tokens_);
  scalar("magnetar_cached_prompt_tokens_total", "counter",
         "Prompt tokens reused from a live session or a stored state.", cached_tokens_);
  scalar("magnetar_completion_tokens_total", "counter", "Generated tokens.", completion_tokens_);
  head("magnetar_cache_placements_total", "counter",
       "How prompts were placed on live sessions (source=\"none\" is a cache miss).");
  for (const auto& [source, n] : placements_) {
    out += fmt::format("magnetar_cache_placements_total{{source=\"{}\"}} {}\n", source, n);
  }
  scalar("magnetar_engine_steps_total", "counter", "Batched engine steps.", steps_);
  scalar("magnetar_engine_batch_items_total", "counter",
         "Sessions advanced, summed over steps (divide by steps for the mean batch).",
         batch_items_);
  scalar("magnetar_prefill_tokens_total", "counter", "Prompt tokens evaluated.", prefill_tokens_);
  scalar("magnetar_decode_tokens_total", "counter", "Generated tokens evaluated.", decode_tokens_);
  scalar("magnetar_prefill_seconds_total", "counter", "Engine time attributed to prefill.",
         fmt::format("{:.6f}", prefill_seconds_));
  scalar("magnetar_decode_seconds_total", "counter", "Engine time attributed to decode.",
         fmt::format("{:.6f}", decode_seconds_));
  scalar("magnetar_prefill_tokens_per_second", "gauge", "Prefill tokens per engine second.",
         fmt::format("{:.3f}", prefill_seconds_ > 0 ? prefill_tokens_ / prefill_seconds_ : 0.0));
  scalar("magnetar_decode_tokens_per_second", "gauge",
         "Decode tokens per engine second (all sessions of a step together).",
         fmt::format("{:.3f}", decode_seconds_ > 0 ? decode_tokens_ / decode_seconds_ : 0.0));
  scalar("magnetar_queue_depth", "gauge", "Generation requests waiting for a live session.",
         queue_depth_);
  scalar("magnetar_busy_sessions", "gauge", "Live sessions running a generation.", busy_slots_);
  scalar("magnetar_sessions", "gauge", "Live sessions (--parallel).", slots_);
  if (!disk_enabled_) return out;
  scalar("magnetar_kv_disk_hits_total", "counter", "Live misses served from a disk checkpoint.",
         disk_hits_);
  scalar("magnetar_kv_disk_misses_total", "counter",
         "Live misses with no usable disk checkpoint (prefilled from the start).", disk_misses_);
  scalar("magnetar_kv_disk_loaded_tokens_total", "counter",
         "Tokens restored from disk checkpoints.", disk_loaded_tokens_);
  head("magnetar_kv_disk_saves_total", "counter", "Disk checkpoints written, by save reason.");
  for (const auto& [reason, n] : disk_saves_) {
    out += fmt::format("magnetar_kv_disk_saves_total{{reason=\"{}\"}} {}\n", reason, n);
  }
  scalar("magnetar_kv_disk_save_failures_total", "counter",
         "Disk checkpoints not written: disk full, I/O error, or larger than the budget.",
         disk_save_failures_);
  scalar("magnetar_kv_disk_evictions_total", "counter", "Files deleted to keep the disk budget.",
         disk_evictions_);
  scalar("magnetar_kv_disk_damaged_total", "counter",
         "Damaged checkpoint files (or payloads the engine refused), deleted.", disk_damaged_);
  scalar("magnetar_kv_disk_bytes", "gauge", "Bytes of the cache directory's counted files.",
         disk_bytes_);
  scalar("magnetar_kv_disk_budget_bytes", "gauge", "The disk budget (--kv-disk-space-mb).",
         disk_budget_bytes_);
  scalar("magnetar_kv_disk_entries", "gauge", "Usable checkpoints in the cache directory.",
         disk_entries_);
  return out;
}

}  // namespace magnetar::server
