// Sparse attention kernels (sparse_attention.cuh); cpu attention.cc attention_chunk is the
// reference.
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/linear.cuh"
#include "backend/cuda/numerics_device.cuh"
#include "backend/cuda/sparse_attention.cuh"

namespace magnetar::gpu {
namespace {

constexpr int kThreads = 128;

__device__ int64_t window_rows(const SparseAttention& a, int64_t pos) {
  return min(a.window_size, pos + 1);
}

__device__ int64_t compressed_rows(const SparseAttention& a, int64_t t, int64_t pos) {
  if (a.ratio == 0) return 0;
  if (a.ratio == 4) return a.selected_count[t];
  return (pos + 1) / a.ratio;
}

// Row j of query t's list: window rows by increasing position, then compressed rows.
__device__ const uint8_t* row_at(const SparseAttention& a, int64_t t, int64_t pos, int64_t nw,
                                 int64_t j) {
  const int64_t rb = a.codec.row_bytes();
  if (j < nw) {
    const int64_t p = pos - nw + 1 + j;
    return p >= a.first ? a.chunk_rows + (p - a.first) * rb : a.window + (p % a.window_size) * rb;
  }
  const int64_t i = j - nw;
  const int64_t index = a.ratio == 4 ? a.selected[t * a.top_k + i] : i;
  return a.compressed + index * rb;
}

// Grid (query·head, row tile): z_j = (q · row_j) · scale, one thread per row.
__global__ void attention_scores_kernel(SparseAttention a) {
  const int64_t th = blockIdx.x;
  const int64_t t = th / a.heads;
  const int64_t pos = a.first + t;
  const int64_t nw = window_rows(a, pos);
  const int64_t n = nw + compressed_rows(a, t, pos);
  const int64_t j = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  if (j >= n) return;
  const uint8_t* row = row_at(a, t, pos, nw, j);
  const float* q = a.q + th * a.head_dim;
  float s = 0;
  for (int d = 0; d < a.head_dim; ++d) s += q[d] * a.codec.value(row, d);
  a.probs[th * a.max_rows + j] = s * a.scale;
}

// One thread block per (query, head): softmax with the sink (the sum by one thread, in order),
// then each thread owns output pairs (2i, 2i+1), sums the rows in order and de-rotates the RoPE
// pairs.
__global__ void attention_output_kernel(SparseAttention a) {
  __shared__ float denominator;
  const int64_t th = blockIdx.x;
  const int64_t t = th / a.heads;
  const int h = static_cast<int>(th % a.heads);
  const int64_t pos = a.first + t;
  const int64_t nw = window_rows(a, pos);
  const int64_t n = nw + compressed_rows(a, t, pos);
  float* z = a.probs + th * a.max_rows;

  float m = -INFINITY;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) m = fmaxf(m, z[j]);
  m = block_max(m);
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) z[j] = exp_f32(z[j] - m);
  __syncthreads();
  if (threadIdx.x == 0) {
    float den = 0;
    for (int64_t j = 0; j < n; ++j) den += z[j];
    den += exp_f32(a.sinks[h] - m);
    denominator = den;
  }
  __syncthreads();
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) z[j] /= denominator;
  __syncthreads();

  const int nope = a.head_dim - a.rope_dims;
  float* o = a.out + th * a.head_dim;
  for (int i = threadIdx.x; i < a.head_dim / 2; i += blockDim.x) {
    const int d = 2 * i;
    float o2[2] = {0.0f, 0.0f};
    for (int64_t j = 0; j < n; ++j) {
      const uint8_t* row = row_at(a, t, pos, nw, j);
      o2[0] += z[j] * a.codec.value(row, d);
      o2[1] += z[j] * a.codec.value(row, d + 1);
    }
    if (d >= nope) rope_pair(o2, a.rope_freqs[(d - nope) / 2], pos, /*inverse=*/true);
    o[d] = o2[0];
    o[d + 1] = o2[1];
  }
}

// ---- The fast kernel (reference_order() false) ----
//
// One thread block per (query, group of G heads): the query's rows are decoded once per tile of
// kTileRows into shared memory and read by the G heads. Each head has kRowGroups warps; warp r
// takes rows j ≡ r (mod kRowGroups) in increasing j and keeps an online softmax (running max m,
// running sum l, running weighted sum acc), lane i holding dims i, i + 32, ... of the head. At the
// end the kRowGroups partial states of a head are merged in warp order together with the sink,
// and the result is de-rotated. The order of every sum depends only on the query's own rows, not
// on G, on the batch or on how the prompt is chunked.
//
// Error vs the reference order (fp32 throughout, u = 2^-24): a score is the same dot product
// summed in another order, |Δz| ≤ ~D·u·scale·Σ_d|q_d·v_d| (D = head_dim); the softmax weights
// then move by a relative ~|Δz| + n·u (n rows), so |Δout| ≤ ~(|Δz|max + (n + D)·u)·max_j|v_j|
// per output. Observed differences are a few ulps of max|v| (tests use 1e-5 relative).
constexpr int kRowGroups = 8;
constexpr int kTileRows = 16;
constexpr int kMaxDims = 512;  // head_dim the fast kernel holds in registers (16 per lane)
constexpr int kMaxPerLane = kMaxDims / 32;

// Dims d..d+3 of a stored row into out[0..3], bit-identical to RowCodec::value. FP8 codes go
// through the hardware's E4M3 → half conversion (exact for every code the encoder writes), four
// per 32-bit load; the caller guarantees D, quant_dims and block are multiples of 4.
__device__ __forceinline__ void decode4(const RowCodec& c, const uint8_t* row, int d, float* out) {
  if (d >= c.quant_dims) {
    const float* f = reinterpret_cast<const float*>(row + c.float_offset()) + (d - c.quant_dims);
    out[0] = f[0];
    out[1] = f[1];
    out[2] = f[2];
    out[3] = f[3];
    return;
  }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  if (!c.format.fp4) {
    const float scale = bits_float(static_cast<uint32_t>(row[c.code_bytes() + d / c.block]) << 23);
    const uint32_t codes = *reinterpret_cast<const uint32_t*>(row + d);
    const __half2 lo(
        __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(codes & 0xffffu), __NV_E4M3));
    const __half2 hi(
        __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(codes >> 16), __NV_E4M3));
    const float2 a = __half22float2(lo), b = __half22float2(hi);
    out[0] = a.x * scale;
    out[1] = a.y * scale;
    out[2] = b.x * scale;
    out[3] = b.y * scale;
    return;
  }
#endif
  for (int i = 0; i < 4; ++i) out[i] = c.value(row, d + i);
}

__global__ void fast_attention_kernel(SparseAttention a, int group_heads) {
  extern __shared__ float smem[];
  const int D = a.head_dim;
  const int per_lane = D / 32;
  const int groups_per_query = a.heads / group_heads;
  const int64_t t = blockIdx.x / groups_per_query;
  const int h0 = static_cast<int>(blockIdx.x % groups_per_query) * group_heads;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = warp / kRowGroups, r = warp % kRowGroups;
  const int h = h0 + g;
  const int64_t pos = a.first + t;
  const int64_t nw = window_rows(a, pos);
  const int64_t n = nw + compressed_rows(a, t, pos);

  float* tile = smem;  // [kTileRows][D]; reused for the partial states after the loop
  __shared__ const uint8_t* row_ptr[kTileRows];

  float q[kMaxPerLane], acc[kMaxPerLane];
  const float* qh = a.q + (t * a.heads + h) * D;
#pragma unroll
  for (int k = 0; k < kMaxPerLane; ++k) {
    q[k] = k < per_lane ? qh[lane + 32 * k] : 0.0f;
    acc[k] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;

  for (int64_t j0 = 0; j0 < n; j0 += kTileRows) {
    const int rows = static_cast<int>(min(static_cast<int64_t>(kTileRows), n - j0));
    if (threadIdx.x < rows) row_ptr[threadIdx.x] = row_at(a, t, pos, nw, j0 + threadIdx.x);
    __syncthreads();
    for (int i = 4 * threadIdx.x; i < rows * D; i += 4 * blockDim.x) {
      const int row = i / D, d = i % D;
      decode4(a.codec, row_ptr[row], d, tile + i);
    }
    __syncthreads();
    for (int row = r; row < rows; row += kRowGroups) {
      const float* v = tile + row * D;
      float vk[kMaxPerLane];
      float s = 0.0f;
#pragma unroll
      for (int k = 0; k < kMaxPerLane; ++k) {
        vk[k] = k < per_lane ? v[lane + 32 * k] : 0.0f;
        s = __fmaf_rn(q[k], vk[k], s);
      }
      s = warp_sum(s) * a.scale;
      if (s > m) {
        const float f = expf(m - s);
        l *= f;
#pragma unroll
        for (int k = 0; k < kMaxPerLane; ++k) acc[k] *= f;
        m = s;
      }
      const float p = expf(s - m);
      l += p;
#pragma unroll
      for (int k = 0; k < kMaxPerLane; ++k) acc[k] = __fmaf_rn(p, vk[k], acc[k]);
    }
    __syncthreads();  // the tile and row_ptr are rewritten next
  }

  // Partial states: acc of (g, r) at tile[(g·kRowGroups + r)·D], (m, l) after all of them.
  float* partial = tile;
  float* ml = tile + group_heads * kRowGroups * D;
  const int slot = g * kRowGroups + r;
#pragma unroll
  for (int k = 0; k < kMaxPerLane; ++k) {
    if (k < per_lane) partial[slot * D + lane + 32 * k] = acc[k];
  }
  if (lane == 0) {
    ml[2 * slot] = m;
    ml[2 * slot + 1] = l;
  }
  __syncthreads();

  const int nope = D - a.rope_dims;
  for (int i = threadIdx.x; i < group_heads * (D / 2); i += blockDim.x) {
    const int gi = i / (D / 2), d = 2 * (i % (D / 2));
    const int hi = h0 + gi;
    const float sink = a.sinks[hi];
    float top = sink;
    for (int s = 0; s < kRowGroups; ++s) top = fmaxf(top, ml[2 * (gi * kRowGroups + s)]);
    float den = expf(sink - top);
    float o2[2] = {0.0f, 0.0f};
    for (int s = 0; s < kRowGroups; ++s) {
      const int sl = gi * kRowGroups + s;
      const float w = expf(ml[2 * sl] - top);  // 0 for a warp that saw no row (m = -inf)
      den += ml[2 * sl + 1] * w;
      o2[0] += partial[sl * D + d] * w;
      o2[1] += partial[sl * D + d + 1] * w;
    }
    o2[0] /= den;
    o2[1] /= den;
    if (d >= nope) rope_pair(o2, a.rope_freqs[(d - nope) / 2], pos, /*inverse=*/true);
    float* o = a.out + (t * a.heads + hi) * D;
    o[d] = o2[0];
    o[d + 1] = o2[1];
  }
}

__global__ void commit_window_kernel(const uint8_t* chunk_rows, int64_t row_bytes, int64_t first,
                                     int64_t first_committed, int64_t window_size,
                                     uint8_t* window) {
  const int64_t p = first_committed + blockIdx.x;
  const auto* src = reinterpret_cast<const uint32_t*>(chunk_rows + (p - first) * row_bytes);
  auto* dst = reinterpret_cast<uint32_t*>(window + (p % window_size) * row_bytes);
  for (int64_t i = threadIdx.x; i < row_bytes / 4; i += blockDim.x) dst[i] = src[i];
}

}  // namespace

namespace {

// Whether the fast kernel takes these shapes: dims in registers (≤ 512, a multiple of 32) and a
// row format decode4 reads four values at a time.
bool fast_supported(const SparseAttention& a) {
  const RowCodec& c = a.codec;
  return a.head_dim % 32 == 0 && a.head_dim <= kMaxDims && c.dims == a.head_dim &&
         c.quant_dims % 4 == 0 && (c.quant_dims == 0 || c.block % 4 == 0) && a.heads > 0;
}

void fast_attention(const SparseAttention& a, cudaStream_t stream) {
  // Two heads per block share each decoded tile when that still leaves a few blocks per SM
  // (prefill); one head per block otherwise (decode), for more blocks.
  const int64_t queries = a.n_tokens * a.heads;
  const int group_heads = a.heads % 2 == 0 && queries / 2 >= 1024 ? 2 : 1;
  const int threads = 32 * kRowGroups * group_heads;
  const size_t tile = static_cast<size_t>(kTileRows) * a.head_dim;
  const size_t partial = static_cast<size_t>(group_heads) * kRowGroups * (a.head_dim + 2);
  const size_t bytes = sizeof(float) * std::max(tile, partial);
  fast_attention_kernel<<<static_cast<unsigned>(queries / group_heads), threads, bytes, stream>>>(
      a, group_heads);
  MAGNETAR_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void sparse_attention_cuda(const SparseAttention& a, cudaStream_t stream) {
  if (a.n_tokens <= 0) return;
  if (!reference_order() && fast_supported(a)) {
    fast_attention(a, stream);
    return;
  }
  const int64_t queries = a.n_tokens * a.heads;
  const dim3 grid(static_cast<unsigned>(queries),
                  static_cast<unsigned>((a.max_rows + kThreads - 1) / kThreads));
  attention_scores_kernel<<<grid, kThreads, 0, stream>>>(a);
  MAGNETAR_CUDA_CHECK(cudaGetLastError());
  attention_output_kernel<<<static_cast<unsigned>(queries), kThreads, 0, stream>>>(a);
  MAGNETAR_CUDA_CHECK(cudaGetLastError());
}

void commit_window_cuda(const uint8_t* chunk_rows, int64_t row_bytes, int64_t first,
                        int64_t n_tokens, int64_t window_size, uint8_t* window,
                        cudaStream_t stream) {
  const int64_t end = first + n_tokens;
  const int64_t first_committed = std::max(first, end - window_size);
  if (end <= first_committed) return;
  commit_window_kernel<<<static_cast<unsigned>(end - first_committed), kThreads, 0, stream>>>(
      chunk_rows, row_bytes, first, first_committed, window_size, window);
  MAGNETAR_CUDA_CHECK(cudaGetLastError());
}

}  // namespace magnetar::gpu
