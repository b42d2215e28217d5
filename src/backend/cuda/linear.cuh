// Matrix products of stored weights with float32 activations on the GPU: the twins of
// cpu::linear and cpu::act_quant_fp8 (backend/cpu/linear.h).
//
// Weights stay in their stored type and are decoded inside the kernels. Two kernels compute the
// products; linear_cuda and linear_experts_cuda choose between them at one dispatch point:
//
//   - The fast GEMV (gemv.cuh, the default): built to stream the weights at memory bandwidth in
//     decode. It sums each output in an order of its own, fixed by the matrix's shape, and the
//     same for every token whatever else shares the launch: a token gets the same bits in decode,
//     in any chunk of a prefill and in any batch; an expert pair the same bits as the dense
//     product with its expert. It needs cols % 8 == 0, a 16-byte aligned x and x_stride % 4 == 0
//     (gemv_supports); other operands take the reference kernel.
//   - The reference kernel (set_reference_order(true), or an operand the GEMV does not take):
//     each output summed in the CPU's order, four partial sums over k ≡ 0, 1, 2, 3 (mod 4), each
//     in increasing k, combined as (s0 + s1) + (s2 + s3), products and sums rounded separately
//     (the library is built with -fmad=false): bit-identical to cpu::linear, whatever the number
//     of tokens. It stages a tile of 64 decoded rows and up to 8 activation rows in shared memory
//     per step of 128 inputs, four threads per output row: correct, not fast.
//
// Error of the fast order against the exact product: both orders compute the same exact f32
// weights times x in f32 arithmetic; a K-term sum in any order is within about K · 2^-24 ·
// Σ_k |w_k · x_k| of the exact value in the worst case and √K · 2^-24 of it typically. The GEMV's
// tree (8-term lane chains, lane accumulation over K / 256 steps, a 32-lane butterfly, ≤ 8 warp
// partials) keeps the chains short, so its typical error is below the CPU order's. Over K = 4096
// that is ≤ 2.4e-4 · Σ|w x| worst case, ~4e-6 typical; tests/backend/cuda/cuda_gemv_test.cc
// checks 1e-5 · Σ|w x| against a double-precision product.
//
// Requirements: cols a multiple of 4 (every V4 matrix is), 4-byte aligned x and y. Violations
// throw std::invalid_argument before anything is enqueued; launch failures std::runtime_error.
// No device code here: .cc files may include this header.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "backend/cuda/device_weights.h"

namespace magnetar::gpu {

// The calling thread's choice of summation order (see above): false (the default) for the fast
// kernels, true for the CPU's order (CudaOptions::reference_order sets it around a forward pass;
// tests that need cpu::linear's bits set it). Launches already enqueued keep their kernel.
void set_reference_order(bool on);
bool reference_order();

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
// when x holds one row per pair). Same summation order as linear_cuda; the fast kernel makes an
// expert id outside [0, w.count) give NaN outputs (the reference kernel trusts the ids).
void linear_experts_cuda(const DeviceExperts& w, const int32_t* expert, int64_t n_pairs,
                         const float* x, int64_t x_divisor, float* y, cudaStream_t stream);

// The official FP8 rounding of linear inputs (cpu::act_quant_fp8): each of the n_rows rows of
// `cols` values gets E4M3 with power-of-two scales per block of 128 (model.md §3.3). In place when
// out == x.
void act_quant_fp8_cuda(const float* x, int64_t n_rows, int64_t cols, float* out,
                        cudaStream_t stream);

}  // namespace magnetar::gpu
