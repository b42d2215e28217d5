// When a server writes and reuses disk checkpoints (kv-cache.md §8, §10; the --kv-cache-* flags of
// server-api.md §2). The server calls these at its save points; the cache itself stores whatever
// it is given.
//
//   cold       after a cold prefill (no live or disk reuse) of a prompt of min…cold_max tokens: a
//              checkpoint of the stable part of the prompt (cold_save_length)
//   continued  during prefill and decode, at every multiple of the continued step
//              (continued_save_due); the server skips it inside a DSML tool-call block
//   evict      before a request that misses the live session replaces it (evict_save_due)
//   shutdown   on clean shutdown (evict_save_due)
//
// After a load, a checkpoint longer than cold_max is consumed (deleted: the live session owns that
// state now and re-saves it on evict or shutdown); a shorter one counts a hit.
#pragma once

#include <cstdint>
#include <span>

namespace magnetar::kvcache {

struct CheckpointOptions {
  int64_t min_tokens = 512;                   // never save or load fewer tokens
  int64_t cold_max_tokens = 30000;            // 0: no cold saves, no consuming loads
  int64_t continued_interval_tokens = 10000;  // 0: no continued saves
  int64_t boundary_trim_tokens = 32;
  int64_t boundary_align_tokens = 2048;  // 0: no alignment
};

class CheckpointPolicy {
 public:
  // Throws std::invalid_argument for a negative option, min_tokens < 1, or cold_max_tokens
  // neither 0 nor ≥ min_tokens.
  explicit CheckpointPolicy(const CheckpointOptions& options);
  const CheckpointOptions& options() const { return options_; }

  // The length of the cold checkpoint for a cold-prefilled prompt, 0 for none. The checkpoint
  // should cover what later requests of the same conversation share: everything before the user
  // turn that states the task (the last `user_token` before the first `assistant_token`; none
  // when the prompt has no `assistant_token`) when that is at least min_tokens long; otherwise the
  // prompt less boundary_trim tokens, aligned down to boundary_align, when that is at least
  // min_tokens and the prompt is longer than min + trim; otherwise the whole prompt.
  int64_t cold_save_length(std::span<const int32_t> prompt, int32_t user_token,
                           int32_t assistant_token) const;

  // The spacing of continued checkpoints: the interval rounded up to the alignment; 0 when off.
  int64_t continued_step() const;
  // Whether the live session, now at `live_tokens`, should be saved as a continued checkpoint,
  // given the longest cold or continued checkpoint already written for it (0 after a cold miss,
  // the loaded length after a disk load).
  bool continued_save_due(int64_t live_tokens, int64_t last_saved_frontier) const;
  // Whether a live session of `live_tokens` is worth an evict or shutdown save.
  bool evict_save_due(int64_t live_tokens) const;

  // Whether a checkpoint of `tokens` may be loaded at all.
  bool may_load(int64_t tokens) const;
  // Whether a checkpoint of `tokens` is deleted after it was loaded (otherwise its hit counts).
  bool consume_after_load(int64_t tokens) const;

 private:
  CheckpointOptions options_;
};

}  // namespace magnetar::kvcache
