// The FFN sublayer on the GPU (model.md §7), the twin of cpu::moe_chunk: router, expert choice
// (by token id in hash layers, by biased top-k elsewhere), routed SwiGLU experts weighted before
// their down projection, the shared expert, and their sum in the CPU's order (routed experts by
// increasing id, then the shared one).
//
// Routing stays on the device. In reference order each (token, slot) pair runs its expert's
// matrices through linear_experts_cuda, so no expert ids travel to the host unless an expert
// cache needs them. When a tensor-core path is installed (gemm_tc.cuh) and the chunk has at least
// its min_expert_tokens tokens, the pairs are grouped by expert and the experts run as batched
// GEMMs (expert_groups.cuh), which reads the per-expert counts back once per layer; the router and
// the shared expert then take the tensor-core path of linear_cuda too. Both paths sum each token's
// expert outputs in the same order. No device code here.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "backend/cuda/device_array.h"
#include "backend/cuda/device_weights.h"
#include "backend/cuda/expert_groups.cuh"
#include "model/model_config.h"

namespace magnetar::gpu {

class ExpertCache;

// Scratch of the FFN sublayer for up to `capacity` tokens.
struct MoeBuffers {
  DeviceArray<float> logits, scores;          // [T][E]
  DeviceArray<int32_t> experts;               // [T][K]
  DeviceArray<float> weights;                 // [T][K]
  DeviceArray<float> xq;                      // [T][D]
  DeviceArray<float> gate, up;                // [T·K][F]
  DeviceArray<float> down;                    // [T·K][D]
  DeviceArray<float> shared_gate, shared_up;  // [T][F]
  DeviceArray<float> shared_down;             // [T][D]
  ExpertGroupBuffers groups;                  // the grouped path's, grown on use
  int64_t capacity = 0;

  // Grows the buffers to hold n_tokens tokens (contents are not kept).
  void reserve(const model::ModelConfig& c, int64_t n_tokens);
};

struct MoeContext {
  const model::ModelConfig& config;
  const DeviceBlock& weights;
  float swiglu_clamp = 10.0f;
  bool official = true;          // FP8 rounding of expert inputs (model.md §3.5)
  int layer = 0;                 // for the expert cache
  ExpertCache* cache = nullptr;  // null when every expert is in device memory
};

// x: normalized inputs [n_tokens][D]; tokens: their ids (hash routing), device memory;
// out: [n_tokens][D].
void moe_chunk_cuda(const MoeContext& ctx, const int32_t* tokens, const float* x, int64_t n_tokens,
                    float* out, MoeBuffers& buffers, cudaStream_t stream);

// The router and the final sum of moe_chunk_cuda, also called alone by the kernel tests. In the
// reference order (linear.cuh) they run the CPU's loops one token per thread or block; otherwise
// one block per token scores the experts in parallel and one warp of it picks them, and the sum
// spreads over blocks, with the same bits: the
// scores are the same elementwise function, the top-k an exact argmax (ties to the lower id; with
// a NaN biased score the choice may differ from the reference's), and every sum keeps its order.
//
// route_tokens_cuda: scores[t][e] = sqrt(softplus(logits[t][e])); experts[t] the n_used experts
// of row tokens[t] of token_experts ([vocab][n_used]) when that is not null (hash layers), else
// the n_used largest scores + bias (bias [n_expert]); weights[t][k] = s_k / Σ s · route_scale.
void route_tokens_cuda(const float* logits, const float* bias, const int32_t* token_experts,
                       const int32_t* tokens, int64_t n_tokens, int n_expert, int n_used,
                       float route_scale, float* scores, int32_t* experts, float* weights,
                       cudaStream_t stream);

// out[t] = Σ over the token's experts by increasing id (equal ids by slot) of their output rows,
// then shared[t], from 0. Pair p = t · n_used + k has row row_of_pair[p] of `routed` (row p when
// row_of_pair is null), rows `dim` floats apart.
void combine_experts_cuda(const int32_t* experts, const float* routed, const int32_t* row_of_pair,
                          const float* shared, int64_t n_tokens, int n_used, int64_t dim,
                          float* out, cudaStream_t stream);

}  // namespace magnetar::gpu
