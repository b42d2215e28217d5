// Bandwidth-oriented matrix products for decode: the fast kernels behind linear_cuda and
// linear_experts_cuda (linear.cuh), which dispatch here. Callers normally use those; this header
// is for the tests and the kernel microbenchmark, which must reach these kernels by name.
//
// Design (shared/spec/cuda-design.md §2.4, register/shared-memory variant):
//   - A thread block of 8 warps owns tiles of rows. Each warp owns kRows rows (2 or 4, by format)
//     of a tile and one K-slice of them: with k_split warps per row group, warp w takes the chunks
//     w % k_split, + k_split, ... of its rows. k_split (1, 2, 4 or 8) depends on the matrix shape
//     alone: 1 for large matrices (LM head, attention products: each warp sums whole rows), up to
//     8 for small ones (attn_kv 512 × 4096) whose few rows must still spread over the GPU.
//   - The grid is persistent: a few blocks per SM (as many as the device holds at once), each
//     looping over the tiles y, y + gridDim.y, ... Each warp streams its (tile, chunk) items
//     through a private ring of 2-4 shared-memory stages filled by 16-byte cp.async copies (L2
//     only: weights are read once), so every warp keeps a few KB of loads in flight across tile
//     boundaries. A chunk is a few 256-element steps of a row (e.g. 1088 B of Q8_0, 528 B of
//     IQ2_XXS). Rows whose start or length is not 16-byte aligned (the tiny test model's 68-byte
//     Q8_0 rows) are copied 2 bytes at a time, correct and slow; every V4 matrix is aligned.
//   - Lanes decode from shared memory in registers (gemv_formats.cuh), multiply with activations
//     read straight from global memory (L1/L2-resident: 16 KB per token at most), reused across
//     the warp's rows, accumulate in fp32, reduce with warp shuffles, and the k_split partial sums
//     of a row are added in warp order through shared memory. No atomics: replays are identical.
//   - Tokens: a block handles up to 8 tokens (1, 2, 4 or 8, the smallest that covers n_tokens);
//     larger counts take several blocks, and routed experts take one block column per (token,
//     slot) pair, its expert's matrix taken from the table. Token groups and pairs are the grid's
//     fast axis, so the blocks reading one row tile (other token groups, other pairs of the same
//     expert) run together and share it through L2: DRAM reads each row tile about once per
//     launch, and only L2 traffic grows with the token count.
//   - Cost model (measured with ncu on the H200): these kernels are bound by instruction issue,
//     not by DRAM, whenever they decode more than ~1 byte per weight: Q8_0 costs ~5.5 lane
//     instructions per weight (byte to float, FMA, shared loads), IQ2_XXS ~6. Hence the hoisted
//     per-lane offsets and the long per-warp streams; see docs/performance.md for the figures.
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

// A grouped product in one launch: w holds `groups` matrices of w.rows / groups rows stacked, and
// group g of token t multiplies x[t][g·cols, (g+1)·cols) into y[t][g·r, (g+1)·r) (r = rows per
// group; x rows of groups·cols floats, y rows of w.rows). Each group gets the bits of gemv_cuda on
// its own row slice (they take the expert kernel: one pair per (token, group)). The attention
// output projection's 8 groups use it in decode. Throws std::invalid_argument when w.rows is not
// a multiple of groups or the group shape is not supported, std::runtime_error on a launch error.
void gemv_grouped_cuda(const DeviceMatrix& w, int64_t groups, const float* x, int64_t n_tokens,
                       float* y, cudaStream_t stream);

}  // namespace magnetar::gpu
