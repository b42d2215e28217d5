// The FFN sublayer (model.md §7): router, expert choice (by token id in hash layers, by biased
// top-k elsewhere), routed SwiGLU experts weighted before their down projection, and the shared
// expert.
#pragma once

#include <cstdint>

#include "backend/cpu/thread_pool.h"
#include "model/model_config.h"
#include "model/model_weights.h"

namespace magnetar::cpu {

struct MoeContext {
  ThreadPool& pool;
  const model::ModelConfig& config;
  const model::BlockWeights& weights;
  float swiglu_clamp = 10.0f;
  bool official = true;  // FP8 rounding of expert inputs (model.md §3.5)
};

// x: normalized inputs [n_tokens][D]; tokens: their ids (hash routing); out: [n_tokens][D].
void moe_chunk(const MoeContext& ctx, const int32_t* tokens, const float* x, int64_t n_tokens,
               float* out);

}  // namespace magnetar::cpu
