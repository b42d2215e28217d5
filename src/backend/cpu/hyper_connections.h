// Manifold-constrained hyper-connections (model.md §5): the residual stream is HC parallel copies
// of the hidden state; before each sublayer hc_pre mixes them into one input, after it hc_post
// writes the output back into every copy through a doubly stochastic (Sinkhorn) mixing matrix.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/cpu/thread_pool.h"
#include "model/model_config.h"
#include "model/model_weights.h"

namespace magnetar::cpu {

// Per-token results of hc_pre, kept for the matching hc_post.
struct HcMix {
  std::vector<float> post;  // [T][HC]
  std::vector<float> comb;  // [T][HC][HC]; comb[j][k]: from source stream j to destination k
};

// hc_pre for n_tokens states X ([T][HC][D]): writes the sublayer inputs y ([T][D]) and the mix.
void hc_pre(ThreadPool& pool, const model::ModelConfig& c, const model::HyperConnectionWeights& w,
            const float* X, int64_t n_tokens, float* y, HcMix& mix);

// hc_post: X'[k] = post[k]·f + Σ_j comb[j][k]·X[j], in place on X ([T][HC][D]).
void hc_post(const model::ModelConfig& c, const HcMix& mix, const float* f, int64_t n_tokens,
             float* X);

// hc_head (§5.3): collapses the HC streams of each token into one vector y ([T][D]).
void hc_head(ThreadPool& pool, const model::ModelConfig& c, const model::WeightMatrix& fn,
             const std::vector<float>& scale, const std::vector<float>& base, const float* X,
             int64_t n_tokens, float* y);

}  // namespace magnetar::cpu
