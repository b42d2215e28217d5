#include "kvcache/checkpoint_policy.h"

#include <algorithm>
#include <stdexcept>

namespace magnetar::kvcache {

CheckpointPolicy::CheckpointPolicy(const CheckpointOptions& o) : options_(o) {
  if (o.min_tokens < 1) throw std::invalid_argument("kv cache: min tokens must be at least 1");
  if (o.cold_max_tokens < 0 || o.continued_interval_tokens < 0 || o.boundary_trim_tokens < 0 ||
      o.boundary_align_tokens < 0)
    throw std::invalid_argument("kv cache: token counts must not be negative");
  if (o.cold_max_tokens != 0 && o.cold_max_tokens < o.min_tokens)
    throw std::invalid_argument("kv cache: cold max tokens must be 0 or at least min tokens");
}

int64_t CheckpointPolicy::cold_save_length(std::span<const int32_t> prompt, int32_t user_token,
                                           int32_t assistant_token) const {
  const int64_t n = static_cast<int64_t>(prompt.size());
  const CheckpointOptions& o = options_;
  if (o.cold_max_tokens == 0 || n < o.min_tokens || n > o.cold_max_tokens) return 0;

  auto first_assistant = std::find(prompt.begin(), prompt.end(), assistant_token);
  auto last_user =
      std::find(std::make_reverse_iterator(first_assistant), prompt.rend(), user_token);
  if (first_assistant != prompt.end() && last_user != prompt.rend()) {
    int64_t anchor = std::distance(prompt.begin(), last_user.base()) - 1;
    if (anchor >= o.min_tokens) return anchor;
  }
  int64_t stable = n - o.boundary_trim_tokens;
  if (o.boundary_align_tokens > 0) stable -= stable % o.boundary_align_tokens;
  if (stable >= o.min_tokens && n > o.min_tokens + o.boundary_trim_tokens) return stable;
  return n;
}

int64_t CheckpointPolicy::continued_step() const {
  const int64_t interval = options_.continued_interval_tokens,
                align = options_.boundary_align_tokens;
  if (interval == 0) return 0;
  if (align == 0) return interval;
  return (interval + align - 1) / align * align;
}

bool CheckpointPolicy::continued_save_due(int64_t live_tokens, int64_t last_saved_frontier) const {
  int64_t step = continued_step();
  return step > 0 && live_tokens >= options_.min_tokens && live_tokens % step == 0 &&
         live_tokens > last_saved_frontier;
}

bool CheckpointPolicy::evict_save_due(int64_t live_tokens) const {
  return live_tokens >= options_.min_tokens;
}

bool CheckpointPolicy::may_load(int64_t tokens) const { return tokens >= options_.min_tokens; }

bool CheckpointPolicy::consume_after_load(int64_t tokens) const {
  return options_.cold_max_tokens != 0 && tokens > options_.cold_max_tokens;
}

}  // namespace magnetar::kvcache
