// The routed experts of a prefill chunk as grouped GEMMs on tensor cores (cuda-design.md §4,
// "MoE"): the (token, slot) pairs are grouped by expert on the device, and every expert with
// tokens multiplies its matrices once by all of its token rows.
//
// Steps, on one stream:
//   1. count the pairs of each expert (integer atomics; one extra counter catches ids outside the
//      experts) and copy the counts to the host: cuBLAS takes problem sizes from the host, and this
//      is the only host round trip (~20 µs, against ~10 ms for a 4096-token layer);
//   2. plan on the host (plan_expert_groups): active experts sorted by token count and cut into
//      groups that fit the f16 weight scratch, each expert padded to its group's largest count so
//      that one batched GEMM serves the group;
//   3. scatter on the device: each expert's pairs get consecutive rows in pair order (a stable
//      counting sort, one thread block per expert), so the layout does not depend on timing;
//      gather the pairs' activations into those rows as f16 (padding rows are zero);
//   4. per group: decode gate and up of its experts to f16 (one [2F][D] block each), then
//      cublasGemmBatchedEx writes [gate | up] for every row in fp32;
//   5. SwiGLU with the clamps, times the route weight, and the official FP8 rounding, in fp32
//      exactly as moe.cu does it, then f16 for the down projection;
//   6. per group: decode down, batched GEMM into fp32 rows (reusing the gate/up buffer).
// The caller combines the rows of each token (moe.cu). Numerics are those of gemm_tc.cuh: each
// expert output is the f16 product of its rows, so a pair's result depends on the other pairs only
// through cuBLAS's choice of kernel for the padded count.
//
// Why batched GEMMs over decoded scratch rather than cublasGemmGroupedBatchedEx: the grouped call
// only returns f16 (or bf16) outputs for f16 inputs, while these products want fp32 outputs, and
// an expert's tokens are few (6 × 4096 / 256 = 96 per expert for a Flash chunk of 4096), so each
// GEMM is bound by reading its f16 weights: padding an expert's columns to its group's largest
// count costs compute that is idle anyway. The cost of this design is the f16 round trip of the
// weights through memory (see docs/performance.md, "prefill GEMM"); decoding inside a custom
// grouped kernel would remove it.
//
// No device code here: .cc files may include this header.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <span>
#include <vector>

#include "backend/cuda/device_array.h"
#include "backend/cuda/device_weights.h"
#include "backend/cuda/gemm_tc.cuh"

namespace magnetar::gpu {

// The host's share of step 2: which experts go together and where their rows lie.
struct ExpertPlan {
  struct Group {
    int64_t begin = 0, end = 0;  // positions in `experts`
    int64_t tokens = 0;          // rows given to each of its experts: its largest count, rounded up
  };
  std::vector<int32_t> experts;    // experts with tokens, most tokens first (ties: lower id)
  std::vector<Group> groups;       // consecutive runs of `experts`
  std::vector<int32_t> first_row;  // per expert id: its first row, or -1 when it has no tokens
  int64_t rows = 0;                // rows of the whole layout
};

// Plans `counts` (tokens per expert) into groups of at most max_group experts whose counts are all
// at least half the group's largest, so that padding at most doubles an expert's rows; each group's
// row count is rounded up to a multiple of row_align. Rows then total at most
// 2 · Σ counts + experts · (row_align − 1). Throws std::invalid_argument for max_group or
// row_align below 1 or a negative count.
ExpertPlan plan_expert_groups(std::span<const int32_t> counts, int64_t max_group,
                              int64_t row_align);

// One layer's routed experts and the activation between them.
struct ExpertFfn {
  const DeviceExperts* gate = nullptr;  // [F][D] each
  const DeviceExperts* up = nullptr;    // [F][D] each
  const DeviceExperts* down = nullptr;  // [D][F] each
  float swiglu_limit = 10.0f;
  bool official = true;  // FP8 rounding of the down projection's input (model.md §3.5)
};

// Scratch of routed_experts_tensor_core, grown as chunks need.
struct ExpertGroupBuffers {
  DeviceArray<int32_t> counts;       // [E + 1]: pairs per expert, then ids outside the experts
  DeviceArray<int32_t> first_row;    // [E]
  DeviceArray<int32_t> plan_ids;     // [active]: ExpertPlan::experts
  DeviceArray<void*> pointers;       // [6][active]: A, B, C of gate/up, then of down
  DeviceArray<int32_t> row_of_pair;  // [P]
  DeviceArray<int32_t> pair_of_row;  // [rows]: the pair of each row, -1 for padding
  DeviceArray<uint16_t> x16;         // [rows][D]
  DeviceArray<uint16_t> mid16;       // [rows][F]
  DeviceArray<float> rows;           // [rows][2F] gate | up, later [rows][D] expert outputs
  std::vector<int32_t> host_counts;
  std::vector<void*> host_pointers;
  ExpertPlan plan;  // the last call's plan (tests and benchmarks read it)
};

// Where the expert outputs lie: pair p's D values at rows + row_of_pair[p] · stride.
struct ExpertRows {
  const float* rows = nullptr;
  const int32_t* row_of_pair = nullptr;
  int64_t stride = 0;
};

// For each pair p < n_tokens · n_used (token p / n_used) with expert e = experts[p] and route
// weight weights[p] (device memory):
//   mid = FP8?(SwiGLU(gate_e · x_t, up_e · x_t) · weight),  output_p = down_e · mid
// with x: [n_tokens][D] (already FP8-rounded by the caller in the official numerics). Waits for
// the stream once (step 1). Throws std::runtime_error when a pair names an expert outside the
// tables (nothing is computed then), std::invalid_argument for shapes the path cannot take, and
// std::runtime_error for CUDA or cuBLAS failures. The returned rows live in `buffers` until its
// next use.
ExpertRows routed_experts_tensor_core(TensorCoreGemm& gemm, const ExpertFfn& ffn,
                                      const int32_t* experts, const float* weights, const float* x,
                                      int64_t n_tokens, int n_used, ExpertGroupBuffers& buffers,
                                      cudaStream_t stream);

}  // namespace magnetar::gpu
