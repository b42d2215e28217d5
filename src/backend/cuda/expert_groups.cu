// The grouped routed experts of expert_groups.cuh.
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <numeric>
#include <stdexcept>
#include <string>

#include "backend/cuda/cublas_check.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/expert_groups.cuh"
#include "backend/cuda/minifloat.h"
#include "backend/cuda/numerics_device.cuh"
#include "backend/cuda/swiglu_device.cuh"

namespace magnetar::gpu {
namespace {

constexpr int kThreads = 256;
// Token rows of a group are rounded up to a multiple of 8: tensor-core tiles and 16-byte aligned
// f16 columns want it, and it adds at most 7 rows per expert.
constexpr int64_t kRowAlign = 8;
// The official FP8 rounding of linear inputs works in blocks of 128 (model.md §3.3).
constexpr int kFp8Block = 128;

unsigned blocks_for(int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

void check_launch() { MAGNETAR_CUDA_CHECK(cudaGetLastError()); }

// counts[e] = pairs naming expert e; counts[n_expert] = pairs naming none of them.
__global__ void count_kernel(const int32_t* experts, int64_t n_pairs, int n_expert,
                             int32_t* counts) {
  const int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (p >= n_pairs) return;
  const int32_t e = experts[p];
  atomicAdd(&counts[e >= 0 && e < n_expert ? e : n_expert], 1);
}

// One block per expert: its pairs, in pair order, take rows first_row[e], first_row[e] + 1, ...
// A block walks the pairs 256 at a time; within a step, a pair's rank is the number of matching
// pairs before it (ballot and popcount per warp, warp totals in shared memory).
__global__ void __launch_bounds__(kThreads)
    scatter_kernel(const int32_t* experts, int64_t n_pairs, const int32_t* first_row,
                   int32_t* row_of_pair, int32_t* pair_of_row) {
  const int32_t e = static_cast<int32_t>(blockIdx.x);
  if (first_row[e] < 0) return;  // no tokens (uniform over the block)
  __shared__ int warp_totals[kThreads / 32];
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int warp = static_cast<int>(threadIdx.x) / 32;
  int64_t next = first_row[e];
  for (int64_t p0 = 0; p0 < n_pairs; p0 += kThreads) {
    const int64_t p = p0 + threadIdx.x;
    const bool mine = p < n_pairs && experts[p] == e;
    const uint32_t ballot = __ballot_sync(0xffffffffu, mine);
    if (lane == 0) warp_totals[warp] = __popc(ballot);
    __syncthreads();
    int before = __popc(ballot & ((1u << lane) - 1u));
    int step_total = 0;
    for (int w = 0; w < kThreads / 32; ++w) {
      if (w < warp) before += warp_totals[w];
      step_total += warp_totals[w];
    }
    if (mine) {
      const int64_t row = next + before;
      row_of_pair[p] = static_cast<int32_t>(row);
      pair_of_row[row] = static_cast<int32_t>(p);
    }
    next += step_total;
    __syncthreads();  // warp_totals is rewritten by the next step
  }
}

// Row r of x16 = f16(x[token of its pair] · scale), or zeros for a padding row.
__global__ void __launch_bounds__(kThreads)
    gather_kernel(const float* x, int64_t dim, int n_used, const int32_t* pair_of_row,
                  const F16Scale* scale, uint16_t* x16) {
  const int64_t r = blockIdx.x;
  const int32_t p = pair_of_row[r];
  uint16_t* dst = x16 + r * dim;
  if (p < 0) {
    for (int64_t c = threadIdx.x; c < dim; c += blockDim.x) dst[c] = 0;
    return;
  }
  const float s = scale->scale;
  const float* src = x + (p / n_used) * dim;
  for (int64_t c = threadIdx.x; c < dim; c += blockDim.x) {
    dst[c] = __half_as_ushort(__float2half_rn(src[c] * s));
  }
}

// Row r holds [gate | up] (2·width floats). The gate half becomes the down projection's input:
// SwiGLU times the pair's route weight, then (official) the FP8 rounding per block of 128, the
// same operations as moe.cu's per-pair path. Padding rows become zeros. Dynamic shared memory:
// `width` floats.
__global__ void __launch_bounds__(kThreads)
    swiglu_rows_kernel(float* rows, int64_t width, const int32_t* pair_of_row, const float* weights,
                       float limit, bool official, MinifloatFormat fp8) {
  extern __shared__ float mid[];
  const int64_t r = blockIdx.x;
  float* gate = rows + r * 2 * width;
  const float* up = gate + width;
  const int32_t p = pair_of_row[r];
  if (p < 0) {
    for (int64_t c = threadIdx.x; c < width; c += blockDim.x) gate[c] = 0.0f;
    return;
  }
  const float w = weights[p];
  for (int64_t c = threadIdx.x; c < width; c += blockDim.x) {
    mid[c] = swiglu(gate[c], up[c], limit) * w;
  }
  __syncthreads();
  if (official) cta_simulate(mid, static_cast<int>(width), kFp8Block, fp8);
  for (int64_t c = threadIdx.x; c < width; c += blockDim.x) gate[c] = mid[c];
}

// The batched GEMMs of one projection over the plan's groups: per group, its experts' weights are
// decoded into the scratch (slot i at scratch + i · slot), then one cublasGemmBatchedEx computes
// C_i (m × n, ld m) = A_iᵀ (m × k) · B_i (k × n) with the group's n for each expert i of the group.
struct Projection {
  const DeviceExperts* weights;
  int64_t rows_offset;  // where in a slot this projection's rows start (up follows gate)
  int64_t slot;         // elements per expert slot
};

void batched_projection(TensorCoreGemm& gemm, const ExpertPlan& plan,
                        std::span<const Projection> decode, int m, int k, void* const* a,
                        void* const* b, void* const* c, const F16Scale* scale,
                        const int32_t* plan_ids, cudaStream_t stream) {
  for (const ExpertPlan::Group& g : plan.groups) {
    const int64_t count = g.end - g.begin;
    for (const Projection& p : decode) {
      decode_experts_f16_cuda(*p.weights, plan_ids + g.begin, count,
                              gemm.weight_scratch() + p.rows_offset, p.slot, stream);
    }
    MAGNETAR_CUBLAS_CHECK(
        cublasGemmBatchedEx(gemm.cublas(stream), CUBLAS_OP_T, CUBLAS_OP_N, m,
                            static_cast<int>(g.tokens), k, &scale->inverse, a + g.begin, CUDA_R_16F,
                            k, b + g.begin, CUDA_R_16F, k, &scale->zero, c + g.begin, CUDA_R_32F, m,
                            static_cast<int>(count), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  }
}

void check_shapes(const ExpertFfn& f) {
  if (f.gate == nullptr || f.up == nullptr || f.down == nullptr) {
    throw std::invalid_argument("grouped experts: missing expert weights");
  }
  const DeviceMatrix &g = f.gate->shape, &u = f.up->shape, &d = f.down->shape;
  if (g.rows != u.rows || g.cols != u.cols || d.rows != g.cols || d.cols != g.rows ||
      f.gate->count != f.up->count || f.gate->count != f.down->count) {
    throw std::invalid_argument("grouped experts: gate, up and down shapes do not match");
  }
  if (g.cols % 8 != 0 || g.rows % 8 != 0) {
    throw std::invalid_argument("grouped experts: dimensions must be multiples of 8");
  }
  if (g.rows * static_cast<int64_t>(sizeof(float)) > 48 * 1024) {
    throw std::invalid_argument("grouped experts: expert width above 12288");
  }
  if (f.gate->table == nullptr || f.up->table == nullptr || f.down->table == nullptr) {
    throw std::invalid_argument("grouped experts: expert tables not in device memory");
  }
}

}  // namespace

ExpertPlan plan_expert_groups(std::span<const int32_t> counts, int64_t max_group,
                              int64_t row_align) {
  if (max_group < 1 || row_align < 1) {
    throw std::invalid_argument("plan_expert_groups: group size and row alignment must be >= 1");
  }
  ExpertPlan plan;
  plan.first_row.assign(counts.size(), -1);
  for (size_t e = 0; e < counts.size(); ++e) {
    if (counts[e] < 0) throw std::invalid_argument("plan_expert_groups: negative count");
    if (counts[e] > 0) plan.experts.push_back(static_cast<int32_t>(e));
  }
  std::stable_sort(plan.experts.begin(), plan.experts.end(),
                   [&](int32_t a, int32_t b) { return counts[a] > counts[b]; });
  const int64_t n = static_cast<int64_t>(plan.experts.size());
  for (int64_t begin = 0; begin < n;) {
    const int64_t largest = counts[plan.experts[begin]];
    int64_t end = begin + 1;
    while (end < n && end - begin < max_group &&
           2 * int64_t{counts[plan.experts[end]]} >= largest) {
      ++end;
    }
    const int64_t tokens = (largest + row_align - 1) / row_align * row_align;
    for (int64_t i = begin; i < end; ++i) {
      plan.first_row[plan.experts[i]] = static_cast<int32_t>(plan.rows);
      plan.rows += tokens;
    }
    plan.groups.push_back({begin, end, tokens});
    begin = end;
  }
  return plan;
}

ExpertRows routed_experts_tensor_core(TensorCoreGemm& gemm, const ExpertFfn& ffn,
                                      const int32_t* experts, const float* weights, const float* x,
                                      int64_t n_tokens, int n_used, ExpertGroupBuffers& b,
                                      cudaStream_t stream) {
  check_shapes(ffn);
  const int64_t E = ffn.gate->count, D = ffn.gate->shape.cols, F = ffn.gate->shape.rows;
  const int64_t P = n_tokens * n_used;
  if (n_tokens <= 0 || n_used <= 0) return {};
  if (P > INT_MAX / 2 || E > 65535) {
    throw std::invalid_argument("grouped experts: too many pairs or experts in one call");
  }

  // 1. Counts, to the host.
  int32_t* counts = grow_after(b.counts, static_cast<size_t>(E + 1), stream);
  MAGNETAR_CUDA_CHECK(
      cudaMemsetAsync(counts, 0, static_cast<size_t>(E + 1) * sizeof(int32_t), stream));
  count_kernel<<<blocks_for(P), kThreads, 0, stream>>>(experts, P, static_cast<int>(E), counts);
  check_launch();
  b.host_counts.resize(static_cast<size_t>(E + 1));
  MAGNETAR_CUDA_CHECK(cudaMemcpyAsync(b.host_counts.data(), counts,
                                      b.host_counts.size() * sizeof(int32_t),
                                      cudaMemcpyDeviceToHost, stream));
  MAGNETAR_CUDA_CHECK(cudaStreamSynchronize(stream));
  if (b.host_counts[E] != 0) {
    throw std::runtime_error("grouped experts: " + std::to_string(b.host_counts[E]) +
                             " pairs name an expert outside the " + std::to_string(E) + " experts");
  }

  // 2. The plan; the stream is idle, so buffers grow without waiting.
  const int64_t slot = 2 * F * D;  // gate and up of one expert; down (D × F) fits too
  const int64_t max_group = gemm.weight_scratch_elements() / slot;
  if (max_group < 1) {
    throw std::invalid_argument("grouped experts: the weight scratch holds no expert (" +
                                std::to_string(slot * 2) + " bytes needed)");
  }
  b.plan = plan_expert_groups(std::span(b.host_counts).first(static_cast<size_t>(E)), max_group,
                              kRowAlign);
  const ExpertPlan& plan = b.plan;
  const int64_t A = static_cast<int64_t>(plan.experts.size());
  const int64_t R = plan.rows;
  ensure_size(b.first_row, static_cast<size_t>(E));
  ensure_size(b.plan_ids, static_cast<size_t>(A));
  ensure_size(b.pointers, static_cast<size_t>(6 * A));
  ensure_size(b.row_of_pair, static_cast<size_t>(P));
  ensure_size(b.pair_of_row, static_cast<size_t>(R));
  ensure_size(b.x16, static_cast<size_t>(R * D));
  ensure_size(b.mid16, static_cast<size_t>(R * F));
  ensure_size(b.rows, static_cast<size_t>(R * std::max(2 * F, D)));

  // Operand pointers of every expert's two GEMMs, in plan order.
  b.host_pointers.resize(static_cast<size_t>(6 * A));
  uint16_t* scratch = gemm.weight_scratch();
  for (const ExpertPlan::Group& g : plan.groups) {
    for (int64_t i = g.begin; i < g.end; ++i) {
      const int64_t row = plan.first_row[plan.experts[i]];
      void** p = b.host_pointers.data() + i;
      p[0 * A] = scratch + (i - g.begin) * slot;
      p[1 * A] = b.x16.data() + row * D;
      p[2 * A] = b.rows.data() + row * 2 * F;
      p[3 * A] = scratch + (i - g.begin) * D * F;
      p[4 * A] = b.mid16.data() + row * F;
      p[5 * A] = b.rows.data() + row * D;
    }
  }
  // From pageable memory: each copy has read its source when it returns.
  MAGNETAR_CUDA_CHECK(cudaMemcpyAsync(b.first_row.data(), plan.first_row.data(),
                                      plan.first_row.size() * sizeof(int32_t),
                                      cudaMemcpyHostToDevice, stream));
  MAGNETAR_CUDA_CHECK(cudaMemcpyAsync(b.plan_ids.data(), plan.experts.data(),
                                      plan.experts.size() * sizeof(int32_t), cudaMemcpyHostToDevice,
                                      stream));
  MAGNETAR_CUDA_CHECK(cudaMemcpyAsync(b.pointers.data(), b.host_pointers.data(),
                                      b.host_pointers.size() * sizeof(void*),
                                      cudaMemcpyHostToDevice, stream));

  // 3. Rows of each expert's pairs, and their activations.
  MAGNETAR_CUDA_CHECK(cudaMemsetAsync(b.pair_of_row.data(), 0xff,
                                      static_cast<size_t>(R) * sizeof(int32_t), stream));
  scatter_kernel<<<static_cast<unsigned>(E), kThreads, 0, stream>>>(
      experts, P, b.first_row.data(), b.row_of_pair.data(), b.pair_of_row.data());
  check_launch();
  F16Scale* x_scale = gemm.scale(1);
  measure_f16_scale_cuda(x, D, n_tokens, D, x_scale, stream);
  gather_kernel<<<static_cast<unsigned>(R), kThreads, 0, stream>>>(
      x, D, n_used, b.pair_of_row.data(), x_scale, b.x16.data());
  check_launch();

  // 4. [gate | up] = [W_gate; W_up] · x for every row.
  void* const* ptr = b.pointers.data();
  const Projection gate_up[] = {{ffn.gate, 0, slot}, {ffn.up, F * D, slot}};
  batched_projection(gemm, plan, gate_up, static_cast<int>(2 * F), static_cast<int>(D), ptr,
                     ptr + A, ptr + 2 * A, x_scale, b.plan_ids.data(), stream);

  // 5. The activation, then f16 with its own scale.
  swiglu_rows_kernel<<<static_cast<unsigned>(R), kThreads, F * sizeof(float), stream>>>(
      b.rows.data(), F, b.pair_of_row.data(), weights, ffn.swiglu_limit, ffn.official,
      fp8_format());
  check_launch();
  F16Scale* mid_scale = gemm.scale(2);
  measure_f16_scale_cuda(b.rows.data(), 2 * F, R, F, mid_scale, stream);
  rows_to_f16_cuda(b.rows.data(), 2 * F, R, F, mid_scale, b.mid16.data(), stream);

  // 6. Down projections, over the rows buffer (its [gate | up] content is spent).
  const Projection down[] = {{ffn.down, 0, D * F}};
  batched_projection(gemm, plan, down, static_cast<int>(D), static_cast<int>(F), ptr + 3 * A,
                     ptr + 4 * A, ptr + 5 * A, mid_scale, b.plan_ids.data(), stream);
  return {b.rows.data(), b.row_of_pair.data(), D};
}

}  // namespace magnetar::gpu
