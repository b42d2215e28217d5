// Row-wise numeric kernels (numerics.cuh).
#include <cuda_runtime.h>

#include <stdexcept>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/linear.cuh"
#include "backend/cuda/numerics.cuh"
#include "backend/cuda/numerics_device.cuh"

namespace magnetar::gpu {
namespace {

constexpr int kNormThreads = 256;
constexpr int kNormPerThread = 32;   // the fast kernel's rows: up to 8192 values (Pro: 7168)
constexpr int kSimulatePerLane = 8;  // blocks of up to 256 values (FP8 uses 128, FP4 32)

__global__ void rms_norm_kernel(const float* x, const float* w, float* y, int64_t dim, float eps) {
  const float* xr = x + static_cast<int64_t>(blockIdx.x) * dim;
  float* yr = y + static_cast<int64_t>(blockIdx.x) * dim;
  double sum = 0.0;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    const float square = xr[i] * xr[i];
    sum += square;
  }
  sum = block_sum(sum);
  const float mean = static_cast<float>(sum) / static_cast<float>(dim);
  const float r = 1.0f / sqrtf(mean + eps);
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    const float normalized = xr[i] * r;
    yr[i] = w == nullptr ? normalized : w[i] * normalized;
  }
}

// rms_norm_kernel's bits (the same 256-thread strided order: fp32 squares summed in double) with
// the thread's whole share of the row (and of w) loaded at once into registers: one round trip to
// memory where the plain loops wait for every load of both passes. y may alias x: each value is
// read and then written by the same thread.
__global__ void rms_norm_fast_kernel(const float* x, const float* w, float* y, int64_t dim,
                                     float eps) {
  const float* xr = x + static_cast<int64_t>(blockIdx.x) * dim;
  float* yr = y + static_cast<int64_t>(blockIdx.x) * dim;
  const int n = static_cast<int>(dim);
  float v[kNormPerThread], g[kNormPerThread];
  load_strided(v, xr, n);
  if (w != nullptr) load_strided(g, w, n);
  const float r = rms_scale(v, n, eps);
#pragma unroll
  for (int k = 0; k < kNormPerThread; ++k) {
    const int i = threadIdx.x + k * kNormThreads;
    if (i < n) {
      const float normalized = v[k] * r;
      yr[i] = w == nullptr ? normalized : g[k] * normalized;
    }
  }
}

// One warp per (row, block): the block's amax by a shuffle tree (max is exact in any order), then
// every value rounded on the scaled grid.
__global__ void simulate_kernel(float* x, int64_t cols, int64_t block, MinifloatFormat f) {
  float* row = x + static_cast<int64_t>(blockIdx.x) * cols;
  const int64_t start = static_cast<int64_t>(blockIdx.y) * block;
  const int64_t end = min(cols, start + block);
  float amax = f.amax_floor;
  for (int64_t i = start + threadIdx.x; i < end; i += 32) amax = fmaxf(amax, fabsf(row[i]));
  amax = warp_max(amax);
  const float s = pow2_ceil(amax * f.inv_max);
  for (int64_t i = start + threadIdx.x; i < end; i += 32) {
    row[i] = round_to_format(f, row[i] / s) * s;
  }
}

// simulate_kernel's bits for blocks of up to 32 · kSimulatePerLane values: each value is loaded
// once, into a register, instead of once per pass.
__global__ void simulate_fast_kernel(float* x, int64_t cols, int64_t block, MinifloatFormat f) {
  float* row = x + static_cast<int64_t>(blockIdx.x) * cols;
  const int64_t start = static_cast<int64_t>(blockIdx.y) * block;
  const int64_t end = min(cols, start + block);
  float v[kSimulatePerLane];
  float amax = f.amax_floor;
#pragma unroll
  for (int j = 0; j < kSimulatePerLane; ++j) {
    const int64_t i = start + threadIdx.x + 32 * j;
    v[j] = i < end ? row[i] : 0.0f;
    if (i < end) amax = fmaxf(amax, fabsf(v[j]));
  }
  amax = warp_max(amax);
  const float s = pow2_ceil(amax * f.inv_max);
#pragma unroll
  for (int j = 0; j < kSimulatePerLane; ++j) {
    const int64_t i = start + threadIdx.x + 32 * j;
    if (i < end) row[i] = round_to_format(f, v[j] / s) * s;
  }
}

void simulate_rows(float* x, int64_t n_rows, int64_t cols, int64_t block, MinifloatFormat f,
                   cudaStream_t stream) {
  if (block < 1) throw std::invalid_argument("quantize simulation: block must be >= 1");
  if (n_rows <= 0 || cols <= 0) return;
  const int64_t blocks = (cols + block - 1) / block;
  if (n_rows > 0x7fffffff || blocks > 65535) {
    throw std::invalid_argument("quantize simulation: too many rows or blocks in one call");
  }
  const dim3 grid(static_cast<unsigned>(n_rows), static_cast<unsigned>(blocks));
  if (reference_order() || block > 32 * kSimulatePerLane) {
    simulate_kernel<<<grid, 32, 0, stream>>>(x, cols, block, f);
  } else {
    simulate_fast_kernel<<<grid, 32, 0, stream>>>(x, cols, block, f);
  }
  MAGNETAR_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void rms_norm_rows_cuda(const float* x, const float* w, float* y, int64_t n_rows, int64_t dim,
                        float eps, cudaStream_t stream) {
  if (n_rows <= 0) return;
  if (reference_order() || dim > kNormThreads * kNormPerThread) {
    rms_norm_kernel<<<static_cast<unsigned>(n_rows), kNormThreads, 0, stream>>>(x, w, y, dim, eps);
  } else {
    rms_norm_fast_kernel<<<static_cast<unsigned>(n_rows), kNormThreads, 0, stream>>>(x, w, y, dim,
                                                                                     eps);
  }
  MAGNETAR_CUDA_CHECK(cudaGetLastError());
}

void fp8_simulate_rows_cuda(float* x, int64_t n_rows, int64_t cols, int64_t block,
                            cudaStream_t stream) {
  simulate_rows(x, n_rows, cols, block, fp8_format(), stream);
}

void fp4_simulate_rows_cuda(float* x, int64_t n_rows, int64_t cols, int64_t block,
                            cudaStream_t stream) {
  simulate_rows(x, n_rows, cols, block, fp4_format(), stream);
}

}  // namespace magnetar::gpu
