// Matrix products of stored weights with float32 activations on the GPU: the twins of
// cpu::linear and cpu::act_quant_fp8 (backend/cpu/linear.h).
//
// Weights stay in their stored type and are decoded inside the kernel, tile by tile, with the
// decoders of weight_decode.cuh, so they are exactly the CPU's float32 weights. Each output is then
// summed in the CPU's order: four partial sums over k ≡ 0, 1, 2, 3 (mod 4), each in increasing k,
// combined as (s0 + s1) + (s2 + s3), with products and sums rounded separately (the library is
// built with -fmad=false). The result is therefore bit-identical to cpu::linear, whatever the
// number of tokens: decode, chunked prefill and batches give the same bits.
//
// The kernel stages a tile of 64 decoded weight rows and up to 8 activation rows in shared memory
// per step of 128 inputs; four threads own one output row, one partial sum each. That is simple
// and correct, not fast: at most 4 threads work on an output, so small matrices leave the GPU
// mostly idle during decode, and each token tile decodes the weights again during prefill
// (cuda-design.md §2.4 is the fast design, which gives up the CPU's summation order).
//
// Requirements: cols a multiple of 4 (every V4 matrix is), 4-byte aligned x and y. Violations
// throw std::invalid_argument before anything is enqueued; launch failures std::runtime_error.
// No device code here: .cc files may include this header.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "backend/cuda/device_weights.h"

namespace magnetar::gpu {

// y[t · y_stride + n] = Σ_k W[n][k] · x[t · x_stride + k] for t < n_tokens, n < w.rows.
void linear_cuda(const DeviceMatrix& w, const float* x, int64_t x_stride, int64_t n_tokens,
                 float* y, int64_t y_stride, cudaStream_t stream);

// Dense rows: x_stride = w.cols, y_stride = w.rows.
inline void linear_cuda(const DeviceMatrix& w, const float* x, int64_t n_tokens, float* y,
                        cudaStream_t stream) {
  linear_cuda(w, x, w.cols, n_tokens, y, w.rows, stream);
}

// The routed-expert form: for each pair p < n_pairs, with e = expert[p],
//   y[p · rows + n] = Σ_k W_e[n][k] · x[(p / x_divisor) · cols + k]
// (x_divisor = n_expert_used when the pairs are (token, slot) and x holds one row per token; 1
// when x holds one row per pair). Same summation order as linear_cuda.
void linear_experts_cuda(const DeviceExperts& w, const int32_t* expert, int64_t n_pairs,
                         const float* x, int64_t x_divisor, float* y, cudaStream_t stream);

// The official FP8 rounding of linear inputs (cpu::act_quant_fp8): each of the n_rows rows of
// `cols` values gets E4M3 with power-of-two scales per block of 128 (model.md §3.3). In place when
// out == x.
void act_quant_fp8_cuda(const float* x, int64_t n_rows, int64_t cols, float* out,
                        cudaStream_t stream);

}  // namespace magnetar::gpu
