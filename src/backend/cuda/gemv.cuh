// Bandwidth-oriented matrix products for decode: the fast kernels behind linear_cuda and
// linear_experts_cuda (linear.cuh), which dispatch here. Callers normally use those; this header
// is for the tests and the kernel microbenchmark, which must reach these kernels by name.
//
// Design (shared/spec/cuda-design.md §2.4, register/shared-memory variant):
//   - A thread block of 8 warps owns a tile of rows. Each warp owns kRows rows (2 or 4, by format)
//     and one K-slice of them: with k_split warps per row group, warp w takes the chunks
//     w % k_split, + k_split, ... of its rows, k_split being the largest power of two ≤ 8 that
//     the row's chunk count allows. Small matrices (attn_kv 512 × 4096) thus still fill 256
//     blocks of 8 warps, large ones (LM head) get many blocks of 8 row groups.
//   - Weights move from global to shared memory in chunks of a whole number of 16-byte words per
//     row (a chunk is a few 256-element steps: 544 B of Q8_0, 528 B of IQ2_XXS, 336 B of Q2_K,
//     576 B of Q4_K), with 16-byte streaming loads (ld.global.cs: read once, do not keep in L1
//     or L2 at the expense of the activations) when the row start and the row length are 16-byte
//     aligned, which every row of the V4 matrices is; other rows (the tiny test model's 68-byte
//     Q8_0 rows) are copied 2 bytes at a time, correct and slow. The loads of the next chunk are
//     issued before the current one is multiplied, so each lane keeps 2-5 loads in flight.
//   - Lanes decode from shared memory in registers (gemv_formats.cuh), multiply with activations
//     read straight from global memory (L1/L2-resident: 16 KB per token at most), reused across
//     the warp's rows, accumulate in fp32, reduce with warp shuffles, and the k_split partial sums
//     of a row are added in warp order through shared memory. No atomics: replays are identical.
//   - Tokens: a block handles up to 8 tokens (1, 2, 4 or 8, the smallest that covers n_tokens);
//     larger counts take several blocks along the grid's y axis, so the weights are read once per
//     8 tokens (as the tiled reference kernel does). Routed experts: one (token, slot) pair per
//     block row, its expert's matrix taken from the table.
//
// Numerics: every output of a token is summed in an order fixed by the matrix's shape alone (lane
// partials over 8 elements, block scale, lane accumulation over the steps, the shuffle tree, then
// the k_split warps in order), and each token's arithmetic is the same whatever else shares its
// launch. So a token gets the same bits in a batch of any size or composition, in any chunk of a
// prefill, and an expert pair the same bits as the dense product with that expert's matrix. The
// order differs from cpu::linear's, so the results are not bit-identical to the CPU; linear.cuh
// keeps the CPU-order kernel selectable and states the error bound.
//
// No device code here: .cc files may include this header.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "backend/cuda/device_weights.h"

namespace magnetar::gpu {

// Whether the fast kernels handle this operand: a type with a GEMV format (F32, F16, BF16, Q8_0,
// Q2_K, Q4_K, IQ2_XXS), cols > 0 and a multiple of 8 (each lane takes 8 consecutive elements),
// x 16-byte aligned and x_stride a multiple of 4 (activations are read as float4).
bool gemv_supports(const DeviceMatrix& w, const float* x, int64_t x_stride);

// linear_cuda's product (same arguments and result layout), on the fast kernels. Throws
// std::invalid_argument when gemv_supports is false, std::runtime_error when a launch fails.
void gemv_cuda(const DeviceMatrix& w, const float* x, int64_t x_stride, int64_t n_tokens, float* y,
               int64_t y_stride, cudaStream_t stream);

// linear_experts_cuda's product on the fast kernels (same arguments and layout). An expert id
// outside [0, w.count) makes that pair's outputs NaN rather than read outside the table. Throws
// like gemv_cuda.
void gemv_experts_cuda(const DeviceExperts& w, const int32_t* expert, int64_t n_pairs,
                       const float* x, int64_t x_divisor, float* y, cudaStream_t stream);

}  // namespace magnetar::gpu
