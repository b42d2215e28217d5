// The FFN sublayer (moe.cuh); cpu/moe.cc is the reference.
#include <cuda_runtime.h>

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

unsigned blocks_for(int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

void check_launch() { MAGNETAR_CUDA_CHECK(cudaGetLastError()); }

}  // namespace

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
  router_scores_kernel<<<blocks_for(T * E), kThreads, 0, stream>>>(b.logits.data(), b.scores.data(),
                                                                   T * E);
  check_launch();
  route_kernel<<<blocks_for(T), kThreads, 0, stream>>>(
      b.scores.data(), w.expert_bias, w.token_experts, tokens, T, static_cast<int>(E),
      static_cast<int>(K), c.expert_weights_scale, b.experts.data(), b.weights.data());
  check_launch();
  if (ctx.cache != nullptr) ctx.cache->make_resident(ctx.layer, b.experts.data(), T * K, stream);

  const float* xq = x;
  if (ctx.official) {
    act_quant_fp8_cuda(x, T, D, b.xq.data(), stream);
    xq = b.xq.data();
  }
  // Routed experts: grouped by expert on tensor cores for large chunks, else one (token, slot) pair
  // per row in the CPU's order.
  const float* routed = b.down.data();
  const int32_t* row_of_pair = nullptr;
  TensorCoreGemm* tensor_cores = current_tensor_core_gemm();
  if (tensor_cores != nullptr && T >= tensor_cores->options().min_expert_tokens) {
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

  combine_kernel<<<static_cast<unsigned>(T), kThreads, 0, stream>>>(
      b.experts.data(), routed, row_of_pair, b.shared_down.data(), static_cast<int>(K), D, out);
  check_launch();
}

}  // namespace magnetar::gpu
