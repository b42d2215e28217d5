// The attention sublayer of one block for a chunk of consecutive tokens of one sequence
// (model.md §6): query path, the shared KV row, the window ring, the compressors, the indexer's
// top-k, sparse attention with per-head sinks, inverse RoPE and the grouped output projection.
//
// A chunk is processed layer by layer, which is equivalent to processing its tokens one at a time
// (§6.9): every query t sees exactly the window rows of positions max(0, t−W+1)..t — from the ring
// for earlier chunks, from this chunk's own rows otherwise — and the compressed rows emitted at or
// before t. The compressors are stepped token by token in order, so their state crosses chunk
// boundaries unchanged.
#pragma once

#include <cstdint>

#include "backend/cpu/numerics.h"
#include "backend/cpu/sequence_state.h"
#include "backend/cpu/thread_pool.h"
#include "model/model_config.h"
#include "model/model_weights.h"

namespace magnetar::cpu {

struct AttentionContext {
  ThreadPool& pool;
  const model::ModelConfig& config;
  const model::BlockWeights& weights;
  const RopeTable& rope;
  uint32_t ratio = 0;
  bool official = true;  // FP8/FP4 simulations of the official model (model.md §3.3–3.5)
  int layer = 0;         // for counters; -1 for the MTP block
};

// x: normalized inputs [n_tokens][D] at positions first_position.. ; out: [n_tokens][D].
// With commit = false the window ring and counters are left untouched (an MTP draft step).
void attention_chunk(const AttentionContext& ctx, LayerState& state, ForwardCounters& counters,
                     int64_t first_position, const float* x, int64_t n_tokens, float* out,
                     bool commit);

}  // namespace magnetar::cpu
