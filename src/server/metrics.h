// Server counters and gauges, exposed as Prometheus text at GET /metrics.
//
// Counters only grow (rates come from Prometheus' rate()); the tokens-per-second figures are the
// totals divided by the engine time spent on them, where a step's time is split between prefill
// and decode by their share of its tokens. Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

namespace magnetar::server {

class Metrics {
 public:
  void count_request(const std::string& endpoint, int status);
  void count_rejected(const std::string& reason);
  void count_usage(int64_t prompt, int64_t cached, int64_t completion);
  void count_placement(const std::string& source);  // "none" is a miss
  void count_cancelled();
  void count_step(int64_t prefill_tokens, int64_t decode_tokens, int64_t batch, double seconds);
  void set_queue(int64_t depth, int64_t busy_slots, int64_t slots);

  // The disk KV cache (disk_state_store.h); its lines appear once set_disk_usage() was called.
  void count_disk_restore(int64_t tokens);  // a live miss served from disk
  void count_disk_miss();                   // a live miss with nothing usable on disk
  void count_disk_save(std::string_view reason);
  void count_disk_save_failure();  // disk full, I/O error, or an entry larger than the budget
  void count_disk_eviction();
  void count_disk_damaged();  // a damaged entry file, or one the engine refused: deleted
  void set_disk_usage(uint64_t bytes, uint64_t budget_bytes, uint64_t entries);

  // The exposition text (text/plain; version=0.0.4).
  std::string render() const;

 private:
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, int>, int64_t> requests_;
  std::map<std::string, int64_t> rejected_;
  std::map<std::string, int64_t> placements_;
  int64_t prompt_tokens_ = 0, cached_tokens_ = 0, completion_tokens_ = 0;
  int64_t cancelled_ = 0;
  int64_t steps_ = 0, batch_items_ = 0;
  int64_t prefill_tokens_ = 0, decode_tokens_ = 0;
  double prefill_seconds_ = 0, decode_seconds_ = 0;
  int64_t queue_depth_ = 0, busy_slots_ = 0, slots_ = 0;
  bool disk_enabled_ = false;
  int64_t disk_hits_ = 0, disk_misses_ = 0, disk_loaded_tokens_ = 0;
  std::map<std::string, int64_t, std::less<>> disk_saves_;  // by save reason
  int64_t disk_save_failures_ = 0, disk_evictions_ = 0, disk_damaged_ = 0;
  uint64_t disk_bytes_ = 0, disk_budget_bytes_ = 0, disk_entries_ = 0;
};

}  // namespace magnetar::server
