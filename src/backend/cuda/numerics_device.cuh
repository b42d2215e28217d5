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

// The pieces of one pair of cpu::RopeTable::rotate: the angle pos · freq as one fp32 product, its
// cosine and (for the inverse rotation negated) sine, and the rotation by them.
__device__ __forceinline__ float rope_angle(float freq, int64_t pos) {
  return static_cast<float>(pos) * freq;
}
__device__ __forceinline__ float rope_sin(float theta, bool inverse) {
  return inverse ? -sin_f32(theta) : sin_f32(theta);
}
// The first (x0) or second (x1) coordinate of the rotated pair.
__device__ __forceinline__ float rotated_first(float x0, float x1, float c, float s) {
  return x0 * c - x1 * s;
}
__device__ __forceinline__ float rotated_second(float x0, float x1, float c, float s) {
  return x0 * s + x1 * c;
}

// One pair of cpu::RopeTable::rotate: x[0], x[1] rotated by pos · freq (or its negative).
__device__ __forceinline__ void rope_pair(float* x, float freq, int64_t pos, bool inverse) {
  const float theta = rope_angle(freq, pos);
  const float c = cos_f32(theta);
  const float s = rope_sin(theta, inverse);
  const float x0 = x[0];
  const float x1 = x[1];
  x[0] = rotated_first(x0, x1, c, s);
  x[1] = rotated_second(x0, x1, c, s);
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

// ---- Low-latency twins of the helpers above (the same bits, a shorter critical path). ----

// The cosines and sines of cta_rope's pairs, trig[2j] = cos, trig[2j + 1] = ±sin of pair j: one
// transcendental per thread (2·pairs threads in parallel) instead of both on one thread. No
// barrier: a kernel starts this before its loads return, and the barrier of its next reduction
// publishes it.
__device__ inline void cta_rope_table(float* trig, const float* freqs, int pairs, int64_t pos,
                                      bool inverse) {
  for (int i = threadIdx.x; i < 2 * pairs; i += blockDim.x) {
    const float theta = rope_angle(freqs[i / 2], pos);
    trig[i] = (i & 1) ? rope_sin(theta, inverse) : cos_f32(theta);
  }
}

// cta_rope of x[0..2·pairs) with the table of cta_rope_table (already published).
__device__ inline void cta_rope_from(float* x, const float* trig, int pairs) {
  for (int j = threadIdx.x; j < pairs; j += blockDim.x) {
    const float x0 = x[2 * j], x1 = x[2 * j + 1];
    const float c = trig[2 * j], s = trig[2 * j + 1];
    x[2 * j] = rotated_first(x0, x1, c, s);
    x[2 * j + 1] = rotated_second(x0, x1, c, s);
  }
  __syncthreads();
}

// v[k] = row[threadIdx.x + k · blockDim.x] (0 past n): a thread's share of a row with all of its
// loads in flight at once, where a plain strided loop waits for each before the next.
template <int N>
__device__ __forceinline__ void load_strided(float (&v)[N], const float* row, int n) {
#pragma unroll
  for (int k = 0; k < N; ++k) {
    const int i = threadIdx.x + k * static_cast<int>(blockDim.x);
    v[k] = i < n ? row[i] : 0.0f;
  }
}

// cta_rms_norm's scale 1 / sqrt(mean(x²) + eps) from the shares of load_strided (n <= N ·
// blockDim.x): the same squares summed in the same order, so the same bits.
template <int N>
__device__ __forceinline__ float rms_scale(const float (&v)[N], int n, float eps) {
  double sum = 0.0;
#pragma unroll
  for (int k = 0; k < N; ++k) {
    if (threadIdx.x + k * static_cast<int>(blockDim.x) < n) {
      const float square = v[k] * v[k];
      sum += square;
    }
  }
  sum = block_sum(sum);
  const float mean = static_cast<float>(sum) / static_cast<float>(n);
  return 1.0f / sqrtf(mean + eps);
}

// cta_hadamard's result for element i = threadIdx.x, held in v (n a power of two, 32 <= n <=
// blockDim.x; threads from n on pass anything and get garbage, but must call it too). Each
// butterfly is the same operation on the same operands (lower: a + b, upper: a − b, a the lower
// element): partners under 32 apart through shuffles, the others through `exchange` (2n floats of
// shared memory, alternated so that one barrier per step suffices). log2(n) steps of a few cycles
// instead of log2(n) shared-memory passes, each behind a barrier.
__device__ inline float cta_hadamard_value(float v, int n, float* exchange) {
  const int i = threadIdx.x;
  float* buffer = exchange;
  for (int h = 1; h < n; h *= 2) {
    float partner;
    if (h < 32) {
      partner = __shfl_xor_sync(0xffffffffu, v, h);
    } else {
      if (i < n) buffer[i] = v;
      __syncthreads();
      partner = i < n ? buffer[i ^ h] : 0.0f;
      buffer = buffer == exchange ? exchange + n : exchange;
    }
    v = (i & h) ? partner - v : v + partner;
  }
  return v * static_cast<float>(1.0 / sqrt(static_cast<double>(n)));
}

// RowCodec::encode_block of block b by one warp (all lanes call it): the block maximum by a
// shuffle tree (a maximum is exact in any order), then two neighbouring values per lane, so that
// an FP4 byte is written whole. Same bytes as the one-thread loop, ~block/64 steps instead of
// 2·block.
__device__ inline void warp_encode_block(const float* values, const RowCodec& codec, int32_t b,
                                         uint8_t* row) {
  const int lane = static_cast<int>(threadIdx.x % 32);
  const MinifloatFormat& f = codec.format;
  const int32_t start = b * codec.block;
  const int32_t end = min(start + codec.block, codec.quant_dims);
  float amax = f.amax_floor;
  for (int32_t i = start + lane; i < end; i += 32) amax = fmaxf(amax, fabsf(values[i]));
  amax = warp_max(amax);
  const float scale = pow2_ceil(amax * f.inv_max);
  if (lane == 0) row[codec.code_bytes() + b] = static_cast<uint8_t>(float_bits(scale) >> 23);
  for (int32_t i = start + 2 * lane; i < end; i += 64) {
    const float q0 = round_to_format(f, values[i] / scale);
    const bool pair = i + 1 < end;
    const float q1 = pair ? round_to_format(f, values[i + 1] / scale) : 0.0f;
    if (f.fp4) {
      const uint8_t high = pair ? static_cast<uint8_t>(e2m1_code(q1) << 4) : 0;
      row[i / 2] = static_cast<uint8_t>(e2m1_code(q0) | high);
    } else {
      row[i] = e4m3_code(q0);
      if (pair) row[i + 1] = e4m3_code(q1);
    }
  }
}

// cta_encode_row's bytes with one warp per block (values readable by the whole block, e.g.
// shared memory): the one-thread-per-block loop leaves a whole FP8 block of 64 values to one
// thread.
__device__ inline void cta_encode_row_fast(const float* values, const RowCodec& codec,
                                           uint8_t* out) {
  const int warps = static_cast<int>(blockDim.x / 32);
  for (int b = static_cast<int>(threadIdx.x / 32); b < codec.n_blocks(); b += warps)
    warp_encode_block(values, codec, b, out);
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
