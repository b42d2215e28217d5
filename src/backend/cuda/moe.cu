// The FFN sublayer (moe.cuh); cpu/moe.cc is the reference.
#include <cuda_runtime.h>

#include <climits>
#include <cmath>
#include <stdexcept>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/expert_cache.h"
#include "backend/cuda/expert_groups.cuh"
#include "backend/cuda/gemm_tc.cuh"
#include "backend/cuda/linear.cuh"
#include "backend/cuda/moe.cuh"
#include "backend/cuda/numerics_device.cuh"
#include "backend/cuda/swiglu_device.cuh"

namespace magnetar::gpu {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxUsed = 16;  // n_expert_used: 6 in V4

// sqrt(softplus(z)), with PyTorch's softplus threshold (z above 20 is returned as is).
__device__ float sqrt_softplus(float z) { return sqrtf(z > 20.0f ? z : log1p_f32(exp_f32(z))); }

__global__ void router_scores_kernel(const float* logits, float* scores, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) scores[i] = sqrt_softplus(logits[i]);
}

// One thread per token: the chosen experts in the CPU's order (hash table order, or biased score
// descending with ties to the lower id) and their weights s / Σs · route scale.
__global__ void route_kernel(const float* scores, const float* bias, const int32_t* token_experts,
                             const int32_t* tokens, int64_t n_tokens, int n_expert, int n_used,
                             float route_scale, int32_t* experts, float* weights) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= n_tokens) return;
  const float* s = scores + t * n_expert;
  int32_t* chosen = experts + t * n_used;
  for (int k = 0; k < n_used; ++k) {
    if (token_experts != nullptr) {
      chosen[k] = token_experts[static_cast<int64_t>(tokens[t]) * n_used + k];
      continue;
    }
    int best = -1;
    float best_score = 0.0f;
    for (int e = 0; e < n_expert; ++e) {
      bool taken = false;
      for (int j = 0; j < k; ++j) taken = taken || chosen[j] == e;
      if (taken) continue;
      const float biased = s[e] + bias[e];
      if (best < 0 || biased > best_score) {  // ascending ids: the first maximum wins ties
        best = e;
        best_score = biased;
      }
    }
    chosen[k] = best;
  }
  float sum = 0;
  for (int k = 0; k < n_used; ++k) sum += s[chosen[k]];
  for (int k = 0; k < n_used; ++k) weights[t * n_used + k] = s[chosen[k]] / sum * route_scale;
}

// cpu run_expert's activation (swiglu_device.cuh), times the route weight of the row (when given).
__global__ void swiglu_kernel(float* gate, const float* up, const float* row_weight, int64_t n_rows,
                              int64_t width, float limit) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n_rows * width) return;
  float v = swiglu(gate[i], up[i], limit);
  if (row_weight != nullptr) v = v * row_weight[i / width];
  gate[i] = v;
}

// out[t] = Σ over the token's experts by increasing id (equal ids by slot) of their outputs, then
// the shared expert's, from 0 (cpu moe_chunk's accumulation order). Pair p's output is row
// row_of_pair[p] of `routed` (row p when row_of_pair is null), rows `dim` floats apart.
__global__ void combine_kernel(const int32_t* experts, const float* routed,
                               const int32_t* row_of_pair, const float* shared, int n_used,
                               int64_t dim, float* out) {
  const int64_t t = blockIdx.x;
  int order[kMaxUsed];
  for (int k = 0; k < n_used; ++k) {
    int j = k;
    while (j > 0 && experts[t * n_used + order[j - 1]] > experts[t * n_used + k]) {
      order[j] = order[j - 1];
      --j;
    }
    order[j] = k;
  }
  int64_t rows[kMaxUsed];
  for (int k = 0; k < n_used; ++k) {
    const int64_t p = t * n_used + order[k];
    rows[k] = row_of_pair != nullptr ? row_of_pair[p] : p;
  }
  for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) {
    float sum = 0.0f;
    for (int k = 0; k < n_used; ++k) sum += routed[rows[k] * dim + d];
    sum += shared[t * dim + d];
    out[t * dim + d] = sum;
  }
}

// ---- The fast router: scores and expert choice in one kernel, one block per token. ----

constexpr int kRouteThreads = 256;      // one score per thread for 256 experts
constexpr int kMaxExpertsPerLane = 16;  // the choosing warp holds n_expert <= 512 keys
constexpr int kMaxFastExperts = 32 * kMaxExpertsPerLane;

// The rank of a biased score as an integer, larger for a better score: NaN (1) below every number,
// −0 equal to +0 (as `>` compares them), so that 0 can mean "none" (taken, or no such expert).
__device__ uint32_t score_key(float v) {
  if (isnan(v)) return 1;
  const uint32_t b = float_bits(v == 0.0f ? 0.0f : v);
  return ((b & 0x80000000u) ? ~b : b | 0x80000000u) + 1;  // at most 0xff800001 (+inf)
}

// router_scores_kernel then route_kernel, to their bits: every thread scores its experts (the
// same elementwise function, all transcendentals of a token in parallel), then one warp picks the
// n_used experts, each slot by a warp-wide integer max of the keys (redux) and the lowest id among
// the maxima: the reference's first maximum in id order whenever no biased score is NaN. Lane k
// keeps slot k; the weights' sum runs over the slots in order through shuffles.
__global__ void route_fast_kernel(const float* __restrict__ logits, float* __restrict__ scores,
                                  const float* bias, const int32_t* token_experts,
                                  const int32_t* tokens, int n_expert, int n_used,
                                  float route_scale, int32_t* experts, float* weights) {
  __shared__ float s[kMaxFastExperts];
  __shared__ uint32_t keys[kMaxFastExperts];
  const int64_t t = blockIdx.x;
  for (int e = threadIdx.x; e < n_expert; e += blockDim.x) {
    const float score = sqrt_softplus(logits[t * n_expert + e]);
    scores[t * n_expert + e] = score;
    s[e] = score;
    if (token_experts == nullptr) keys[e] = score_key(score + bias[e]);
  }
  __syncthreads();
  if (threadIdx.x >= 32) return;
  const int lane = static_cast<int>(threadIdx.x);
  int chosen = 0;  // lane k < n_used: the expert of slot k
  if (token_experts != nullptr) {
    if (lane < n_used) chosen = token_experts[static_cast<int64_t>(tokens[t]) * n_used + lane];
  } else {
    uint32_t key[kMaxExpertsPerLane];  // of expert lane + 32·i; 0 once taken or past n_expert
#pragma unroll
    for (int i = 0; i < kMaxExpertsPerLane; ++i) {
      const int e = lane + 32 * i;
      key[i] = e < n_expert ? keys[e] : 0;
    }
    for (int k = 0; k < n_used; ++k) {
      uint32_t best = 0;
      int best_id = INT_MAX;
#pragma unroll
      for (int i = 0; i < kMaxExpertsPerLane; ++i) {
        if (key[i] > best) {  // ascending ids: the first maximum of the lane wins ties
          best = key[i];
          best_id = lane + 32 * i;
        }
      }
      const uint32_t top = __reduce_max_sync(0xffffffffu, best);
      const int id = __reduce_min_sync(0xffffffffu, best == top ? best_id : INT_MAX);
#pragma unroll
      for (int i = 0; i < kMaxExpertsPerLane; ++i) {
        if (lane + 32 * i == id) key[i] = 0;
      }
      if (lane == k) chosen = id;
    }
  }
  const float mine = lane < n_used ? s[chosen] : 0.0f;
  float sum = 0;
  for (int k = 0; k < n_used; ++k) sum += __shfl_sync(0xffffffffu, mine, k);
  if (lane < n_used) {
    experts[t * n_used + lane] = chosen;
    weights[t * n_used + lane] = mine / sum * route_scale;
  }
}

// combine_kernel's bits with one thread per output value, grid (token, chunks of D). The order of
// the token's pairs (by expert id, equal ids by slot: the reference's stable insertion sort) is
// each pair's rank, counted by the first warp from ids loaded all at once; the reference sort reads
// them one dependent load after another.
__global__ void combine_fast_kernel(const int32_t* experts, const float* __restrict__ routed,
                                    const int32_t* row_of_pair, const float* __restrict__ shared,
                                    int n_used, int64_t dim, float* __restrict__ out) {
  __shared__ int64_t rows[kMaxUsed];
  const int64_t t = blockIdx.x;
  const int64_t d = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  const float last = d < dim ? shared[t * dim + d] : 0.0f;  // loaded while the order is found
  if (threadIdx.x < 32) {
    const int k = static_cast<int>(threadIdx.x);
    const int64_t p = t * n_used + k;
    const int32_t id = k < n_used ? experts[p] : 0;
    const int64_t row = k < n_used ? (row_of_pair != nullptr ? row_of_pair[p] : p) : 0;
    int rank = 0;
    for (int j = 0; j < n_used; ++j) {
      const int32_t other = __shfl_sync(0xffffffffu, id, j);
      rank += other < id || (other == id && j < k) ? 1 : 0;
    }
    if (k < n_used) rows[rank] = row;
  }
  __syncthreads();
  if (d >= dim) return;
  float sum = 0.0f;
  for (int k = 0; k < n_used; ++k) sum += routed[rows[k] * dim + d];
  sum += last;
  out[t * dim + d] = sum;
}

unsigned blocks_for(int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

void check_launch() { MAGNETAR_CUDA_CHECK(cudaGetLastError()); }

}  // namespace

void route_tokens_cuda(const float* logits, const float* bias, const int32_t* token_experts,
                       const int32_t* tokens, int64_t n_tokens, int n_expert, int n_used,
                       float route_scale, float* scores, int32_t* experts, float* weights,
                       cudaStream_t stream) {
  if (n_used < 1 || n_used > kMaxUsed || n_used > n_expert) {
    throw std::invalid_argument("route_tokens_cuda: need 1 <= n_expert_used <= min(16, n_expert)");
  }
  if (n_tokens <= 0) return;
  if (reference_order() || n_expert > kMaxFastExperts) {
    router_scores_kernel<<<blocks_for(n_tokens * n_expert), kThreads, 0, stream>>>(
        logits, scores, n_tokens * n_expert);
    check_launch();
    route_kernel<<<blocks_for(n_tokens), kThreads, 0, stream>>>(scores, bias, token_experts, tokens,
                                                                n_tokens, n_expert, n_used,
                                                                route_scale, experts, weights);
  } else {
    route_fast_kernel<<<static_cast<unsigned>(n_tokens), kRouteThreads, 0, stream>>>(
        logits, scores, bias, token_experts, tokens, n_expert, n_used, route_scale, experts,
        weights);
  }
  check_launch();
}

void combine_experts_cuda(const int32_t* experts, const float* routed, const int32_t* row_of_pair,
                          const float* shared, int64_t n_tokens, int n_used, int64_t dim,
                          float* out, cudaStream_t stream) {
  if (n_used < 1 || n_used > kMaxUsed) {
    throw std::invalid_argument("combine_experts_cuda: need 1 <= n_expert_used <= 16");
  }
  if (n_tokens <= 0 || dim <= 0) return;
  if (reference_order()) {
    combine_kernel<<<static_cast<unsigned>(n_tokens), kThreads, 0, stream>>>(
        experts, routed, row_of_pair, shared, n_used, dim, out);
  } else {
    combine_fast_kernel<<<dim3(static_cast<unsigned>(n_tokens), blocks_for(dim)), kThreads, 0,
                          stream>>>(experts, routed, row_of_pair, shared, n_used, dim, out);
  }
  check_launch();
}

void MoeBuffers::reserve(const model::ModelConfig& c, int64_t n) {
  if (n <= capacity) return;
  const size_t T = static_cast<size_t>(n), E = c.n_expert, K = c.n_expert_used, D = c.n_embd,
               F = c.expert_ffn;
  ensure_size(logits, T * E);
  ensure_size(scores, T * E);
  ensure_size(experts, T * K);
  ensure_size(weights, T * K);
  ensure_size(xq, T * D);
  ensure_size(gate, T * K * F);
  ensure_size(up, T * K * F);
  ensure_size(down, T * K * D);
  ensure_size(shared_gate, T * F);
  ensure_size(shared_up, T * F);
  ensure_size(shared_down, T * D);
  capacity = n;
}

void moe_chunk_cuda(const MoeContext& ctx, const int32_t* tokens, const float* x, int64_t n_tokens,
                    float* out, MoeBuffers& b, cudaStream_t stream) {
  const model::ModelConfig& c = ctx.config;
  const DeviceBlock& w = ctx.weights;
  const int64_t T = n_tokens, E = c.n_expert, K = c.n_expert_used, D = c.n_embd, F = c.expert_ffn;
  if (K > kMaxUsed) throw std::invalid_argument("the CUDA backend supports up to 16 used experts");
  if (T <= 0) return;
  if (T > b.capacity) throw std::logic_error("moe_chunk_cuda: buffers not reserved");

  // Router (§7.1, §7.2): scores from the unbiased sqrt-softplus; the bias only picks experts.
  linear_cuda(w.gate_inp, x, T, b.logits.data(), stream);
  route_tokens_cuda(b.logits.data(), w.expert_bias, w.token_experts, tokens, T, static_cast<int>(E),
                    static_cast<int>(K), c.expert_weights_scale, b.scores.data(), b.experts.data(),
                    b.weights.data(), stream);
  if (ctx.cache != nullptr) ctx.cache->make_resident(ctx.layer, b.experts.data(), T * K, stream);

  const float* xq = x;
  if (ctx.official) {
    act_quant_fp8_cuda(x, T, D, b.xq.data(), stream);
    xq = b.xq.data();
  }
  // Routed experts: grouped by expert on tensor cores for large chunks (unless the CPU's order is
  // asked for, as in linear_cuda), else one (token, slot) pair per row.
  const float* routed = b.down.data();
  const int32_t* row_of_pair = nullptr;
  TensorCoreGemm* tensor_cores = current_tensor_core_gemm();
  if (tensor_cores != nullptr && !reference_order() &&
      T >= tensor_cores->options().min_expert_tokens) {
    const ExpertFfn ffn{&w.gate_exps, &w.up_exps, &w.down_exps, ctx.swiglu_clamp, ctx.official};
    const ExpertRows rows =
        routed_experts_tensor_core(*tensor_cores, ffn, b.experts.data(), b.weights.data(), xq, T,
                                   static_cast<int>(K), b.groups, stream);
    routed = rows.rows;
    row_of_pair = rows.row_of_pair;
  } else {
    linear_experts_cuda(w.gate_exps, b.experts.data(), T * K, xq, K, b.gate.data(), stream);
    linear_experts_cuda(w.up_exps, b.experts.data(), T * K, xq, K, b.up.data(), stream);
    swiglu_kernel<<<blocks_for(T * K * F), kThreads, 0, stream>>>(
        b.gate.data(), b.up.data(), b.weights.data(), T * K, F, ctx.swiglu_clamp);
    check_launch();
    if (ctx.official) act_quant_fp8_cuda(b.gate.data(), T * K, F, b.gate.data(), stream);
    linear_experts_cuda(w.down_exps, b.experts.data(), T * K, b.gate.data(), 1, b.down.data(),
                        stream);
  }

  // The shared expert (weight 1).
  linear_cuda(w.gate_shexp, xq, T, b.shared_gate.data(), stream);
  linear_cuda(w.up_shexp, xq, T, b.shared_up.data(), stream);
  swiglu_kernel<<<blocks_for(T * F), kThreads, 0, stream>>>(
      b.shared_gate.data(), b.shared_up.data(), nullptr, T, F, ctx.swiglu_clamp);
  check_launch();
  if (ctx.official) act_quant_fp8_cuda(b.shared_gate.data(), T, F, b.shared_gate.data(), stream);
  linear_cuda(w.down_shexp, b.shared_gate.data(), T, b.shared_down.data(), stream);

  combine_experts_cuda(b.experts.data(), routed, row_of_pair, b.shared_down.data(), T,
                       static_cast<int>(K), D, out, stream);
}

}  // namespace magnetar::gpu
