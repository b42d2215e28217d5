// Device building blocks shared by the kernels: deterministic reductions and the numeric
// primitives of cpu/numerics.h applied by a whole thread block (a "CTA") to one row.
//
// Each CTA helper is the twin of the CPU function of the same name and keeps its operation order
// wherever that decides the bits: RMSNorm squares in fp32 summed in double and rounded once; RoPE
// angles as one fp32 product and separately rounded rotations (the library is built with
// -fmad=false); Hadamard butterflies with one final scaling; block minifloat rounding through
// minifloat.h. The elementary functions (exp, log1p, cos, sin) are computed in double and rounded
// once: that is the correctly rounded float, which the host library's float functions return in
// all but rare cases, so GPU and CPU nearly always agree to the bit (CUDA's float versions are
// only within 2 ulp).
//
// A CTA helper must be called by every thread of the block (they synchronize); rows may be in
// shared or global memory. Block sizes are multiples of 32, at most 1024. Device code only.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/minifloat.h"
#include "backend/cuda/row_codec.h"

namespace magnetar::gpu {

__device__ __forceinline__ float exp_f32(float x) {
  return static_cast<float>(exp(static_cast<double>(x)));
}
__device__ __forceinline__ float log1p_f32(float x) {
  return static_cast<float>(log1p(static_cast<double>(x)));
}
__device__ __forceinline__ float cos_f32(float x) {
  return static_cast<float>(cos(static_cast<double>(x)));
}
__device__ __forceinline__ float sin_f32(float x) {
  return static_cast<float>(sin(static_cast<double>(x)));
}

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  }
  return v;
}

// The sum of every thread's v, returned to all threads. The order is fixed (a shuffle tree per
// warp, then the warps in order), so results do not vary between runs.
template <typename T>
__device__ T block_sum(T v) {
  __shared__ T partial[32];
  v = warp_sum(v);
  const int warps = static_cast<int>(blockDim.x) / 32;
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = v;
  __syncthreads();
  T total = partial[0];
  for (int i = 1; i < warps; ++i) total += partial[i];
  __syncthreads();  // partial may be reused by the next call
  return total;
}

__device__ inline float block_max(float v) {
  __shared__ float partial[32];
  v = warp_max(v);
  const int warps = static_cast<int>(blockDim.x) / 32;
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = v;
  __syncthreads();
  float total = partial[0];
  for (int i = 1; i < warps; ++i) total = fmaxf(total, partial[i]);
  __syncthreads();
  return total;
}

// cpu::rms_norm on row[0..n), in place; w == nullptr for the unweighted form.
__device__ inline void cta_rms_norm(float* row, const float* w, int n, float eps) {
  double sum = 0.0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const float square = row[i] * row[i];
    sum += square;
  }
  sum = block_sum(sum);
  const float mean = static_cast<float>(sum) / static_cast<float>(n);
  const float r = 1.0f / sqrtf(mean + eps);
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const float normalized = row[i] * r;
    row[i] = w == nullptr ? normalized : w[i] * normalized;
  }
  __syncthreads();
}

// One pair of cpu::RopeTable::rotate: x[0], x[1] rotated by pos · freq (or its negative).
__device__ __forceinline__ void rope_pair(float* x, float freq, int64_t pos, bool inverse) {
  const float theta = static_cast<float>(pos) * freq;
  const float c = cos_f32(theta);
  const float s = inverse ? -sin_f32(theta) : sin_f32(theta);
  const float x0 = x[0];
  const float x1 = x[1];
  x[0] = x0 * c - x1 * s;
  x[1] = x0 * s + x1 * c;
}

// cpu::RopeTable::rotate of x[0..2·pairs).
__device__ inline void cta_rope(float* x, const float* freqs, int pairs, int64_t pos,
                                bool inverse) {
  for (int j = threadIdx.x; j < pairs; j += blockDim.x)
    rope_pair(x + 2 * j, freqs[j], pos, inverse);
  __syncthreads();
}

// cpu::hadamard of v[0..n), n a power of two.
__device__ inline void cta_hadamard(float* v, int n) {
  for (int h = 1; h < n; h *= 2) {
    for (int i = threadIdx.x; i < n / 2; i += blockDim.x) {
      const int j = (i / h) * 2 * h + i % h;
      const float a = v[j];
      const float b = v[j + h];
      v[j] = a + b;
      v[j + h] = a - b;
    }
    __syncthreads();
  }
  const float scale = static_cast<float>(1.0 / sqrt(static_cast<double>(n)));
  for (int i = threadIdx.x; i < n; i += blockDim.x) v[i] *= scale;
  __syncthreads();
}

// The block simulation of one block [start, end) of v (cpu::simulate_blocks), by one thread.
__device__ inline void simulate_block(float* v, int start, int end, const MinifloatFormat& f) {
  float amax = f.amax_floor;
  for (int i = start; i < end; ++i) amax = fmaxf(amax, fabsf(v[i]));
  const float s = pow2_ceil(amax * f.inv_max);
  for (int i = start; i < end; ++i) v[i] = round_to_format(f, v[i] / s) * s;
}

// cpu::fp8_simulate / fp4_simulate of v[0..n) in blocks of `block`, one thread per block.
__device__ inline void cta_simulate(float* v, int n, int block, const MinifloatFormat& f) {
  for (int b = threadIdx.x; b * block < n; b += blockDim.x) {
    simulate_block(v, b * block, min(n, (b + 1) * block), f);
  }
  __syncthreads();
}

// Stores a row of codec.dims floats in the codec's format (row_codec.h).
__device__ inline void cta_encode_row(const float* values, const RowCodec& codec, uint8_t* out) {
  for (int b = threadIdx.x; b < codec.n_blocks(); b += blockDim.x)
    codec.encode_block(values, b, out);
  for (int i = codec.code_bytes() + codec.n_blocks() + threadIdx.x; i < codec.float_offset();
       i += blockDim.x) {
    out[i] = 0;
  }
  for (int d = codec.quant_dims + threadIdx.x; d < codec.dims; d += blockDim.x) {
    codec.store_float(values, d, out);
  }
  __syncthreads();
}

// Copies n floats into a shared-memory row.
__device__ inline void cta_load(float* dst, const float* src, int n) {
  for (int i = threadIdx.x; i < n; i += blockDim.x) dst[i] = src[i];
  __syncthreads();
}

}  // namespace magnetar::gpu
