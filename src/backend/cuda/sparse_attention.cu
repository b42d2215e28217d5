// Sparse attention kernels (sparse_attention.cuh); cpu attention.cc attention_chunk is the
// reference.
#include <cooperative_groups.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_device.h"
#include "backend/cuda/linear.cuh"
#include "backend/cuda/numerics_device.cuh"
#include "backend/cuda/sparse_attention.cuh"

namespace magnetar::gpu {
namespace {

namespace cg = cooperative_groups;

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
// A cluster of kClusterBlocks thread blocks of kRowGroups warps per (query, head), so that a
// decode token's 64 heads occupy 128 SMs. The query's rows are decoded a tile of kTileRows at a
// time into shared memory, block b of the cluster taking tiles k ≡ b (mod kClusterBlocks); warp r
// of a block takes the rows j ≡ r (mod kRowGroups) of its tiles in increasing j and keeps an online
// softmax (running max m, running sum l, running weighted sum acc), lane i holding dims i, i + 32,
// ... of the head. At the end block 0 merges the states of all the cluster's warps (read from the
// other block's shared memory) in a fixed order together with the sink, and de-rotates the result.
// The order of every sum depends only on the query's own rows, not on the batch or on how the
// prompt is chunked.
//
// A block is latency-bound (one per SM in decode), so each thread issues all its loads of a tile
// before it decodes any of them.
//
// Error vs the reference order (fp32 throughout, u = 2^-24): a score is the same dot product
// summed in another order, |Δz| ≤ ~D·u·scale·Σ_d|q_d·v_d| (D = head_dim); the softmax weights
// then move by a relative ~|Δz| + n·u (n rows), so |Δout| ≤ ~(|Δz|max + (n + D)·u)·max_j|v_j|
// per output. Both orders stay within 2e-5 of a double-precision computation on the tests'
// random rows (|v| ≤ 2, scores spread over a few units).
constexpr int kClusterBlocks = 2;
constexpr int kRowGroups = 16;
constexpr int kThreadsFast = 32 * kRowGroups;
constexpr int kTileRows = 32;
constexpr int kMaxDims = 512;  // head_dim the fast kernel holds in registers (16 per lane)
// The kernel's constants below are unused in a build for GPUs without clusters (sm_80, sm_89).
[[maybe_unused]] constexpr int kMaxPerLane = kMaxDims / 32;
[[maybe_unused]] constexpr int kLoadBatch = kTileRows * kMaxDims / 4 / kThreadsFast;  // per thread

// A row format's layout with the divisions taken out (they would dominate the decoding): the
// fast path takes power-of-two block sizes.
struct FastLayout {
  int quant_dims;  // FP8 dims first (codes at byte d, exponents at quant_dims + (d >> block_shift))
  int block_shift;  // log2 of the values per exponent
  int float_offset;
};

// The raw words behind dims d..d+3 of a stored row: four float32 words, or (FP8 dims) the word of
// four codes and the block's exponent byte. Decoding them gives RowCodec::value's bits: FP8 codes
// go through the hardware's E4M3 → half conversion, exact for every code the encoder writes. The
// caller guarantees D, quant_dims and block are multiples of 4 and an FP8 (not FP4) format.
__device__ __forceinline__ uint4 load4(const FastLayout& c, const uint8_t* row, int d) {
  if (d >= c.quant_dims) {
    const auto* f = reinterpret_cast<const uint32_t*>(row + c.float_offset) + (d - c.quant_dims);
    return make_uint4(f[0], f[1], f[2], f[3]);
  }
  return make_uint4(*reinterpret_cast<const uint32_t*>(row + d),
                    row[c.quant_dims + (d >> c.block_shift)], 0, 0);
}

__device__ __forceinline__ void decode4(const FastLayout& c, uint4 raw, int d, float* out) {
  if (d >= c.quant_dims) {
    out[0] = __uint_as_float(raw.x);
    out[1] = __uint_as_float(raw.y);
    out[2] = __uint_as_float(raw.z);
    out[3] = __uint_as_float(raw.w);
    return;
  }
  const float scale = __uint_as_float(raw.y << 23);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 890
  for (int i = 0; i < 4; ++i) out[i] = e4m3_value(static_cast<uint8_t>(raw.x >> (8 * i))) * scale;
  return;
#endif
  const __half2 lo(
      __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(raw.x & 0xffffu), __NV_E4M3));
  const __half2 hi(
      __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(raw.x >> 16), __NV_E4M3));
  const float2 a = __half22float2(lo), b = __half22float2(hi);
  out[0] = a.x * scale;
  out[1] = a.y * scale;
  out[2] = b.x * scale;
  out[3] = b.y * scale;
}

// Thread block clusters exist from sm_90 on. Builds for older GPUs (CUDA_ARCH 80 or 89) compile
// the kernel without them as a trap, and the host never launches it there (clusters_available).
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900
#define MAGNETAR_FAST_ATTENTION_CLUSTER __cluster_dims__(kClusterBlocks, 1, 1)
#else
#define MAGNETAR_FAST_ATTENTION_CLUSTER
#endif

__global__ void MAGNETAR_FAST_ATTENTION_CLUSTER __launch_bounds__(kThreadsFast)
    fast_attention_kernel(SparseAttention a, int heads_per_block) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
  __trap();
#else
  extern __shared__ float smem[];
  const int D = a.head_dim;
  const int per_lane = D / 32;
  const int d_shift = __ffs(D) - 1;  // D is a power of two
  const FastLayout layout{a.codec.quant_dims, __ffs(a.codec.block) - 1, a.codec.float_offset()};
  // A cluster takes the heads [h0, h0 + heads_per_block) of token t: they read the same rows (one
  // KV head for all query heads), decoded once per tile for all of them. Warp r works for head
  // h0 + r / warps_per_head on the rows rg, rg + warps_per_head, ... of each tile.
  const int head_groups = a.heads / heads_per_block;
  const int warps_per_head = kRowGroups / heads_per_block;
  const int64_t cluster_id = blockIdx.x / kClusterBlocks;
  const int rank = static_cast<int>(blockIdx.x % kClusterBlocks);
  const int64_t t = cluster_id / head_groups;
  const int h0 = static_cast<int>(cluster_id % head_groups) * heads_per_block;
  const int r = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int rg = r % warps_per_head;
  const int64_t query = t * a.heads + h0 + r / warps_per_head;  // this warp's (token, head)
  const int64_t pos = a.first + t;
  const int64_t nw = window_rows(a, pos);
  const int64_t n = nw + compressed_rows(a, t, pos);

  float* tile = smem;  // [kTileRows][D]; reused for the partial states after the loop
  __shared__ const uint8_t* row_ptr[kTileRows];

  float q[kMaxPerLane], acc[kMaxPerLane];
  const float* qh = a.q + query * D;
#pragma unroll
  for (int k = 0; k < kMaxPerLane; ++k) {
    q[k] = k < per_lane ? qh[lane + 32 * k] : 0.0f;
    acc[k] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;

  for (int64_t j0 = rank * kTileRows; j0 < n; j0 += kClusterBlocks * kTileRows) {
    const int rows = static_cast<int>(min(static_cast<int64_t>(kTileRows), n - j0));
    if (threadIdx.x < rows) row_ptr[threadIdx.x] = row_at(a, t, pos, nw, j0 + threadIdx.x);
    __syncthreads();
    const int groups = rows * D / 4;  // 4-value groups of the tile
    uint4 raw[kLoadBatch];
#pragma unroll
    for (int k = 0; k < kLoadBatch; ++k) {
      const int i = 4 * (threadIdx.x + k * kThreadsFast);
      if (i < 4 * groups) raw[k] = load4(layout, row_ptr[i >> d_shift], i & (D - 1));
    }
#pragma unroll
    for (int k = 0; k < kLoadBatch; ++k) {
      const int i = 4 * (threadIdx.x + k * kThreadsFast);
      if (i < 4 * groups) decode4(layout, raw[k], i & (D - 1), tile + i);
    }
    __syncthreads();
    for (int row = rg; row < rows; row += warps_per_head) {
      const float* v = tile + row * D;
      float vk[kMaxPerLane];
      float s = 0.0f;
#pragma unroll
      for (int k = 0; k < kMaxPerLane; ++k) {
        vk[k] = k < per_lane ? v[lane + 32 * k] : 0.0f;
        s = __fmaf_rn(q[k], vk[k], s);
      }
      s = warp_sum(s) * a.scale;  // the same in every lane (a butterfly)
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

  // Partial states: warp r's acc at tile[r·D], its (m, l) after all of them.
  float* partial = tile;
  float* ml = tile + kRowGroups * D;
#pragma unroll
  for (int k = 0; k < kMaxPerLane; ++k) {
    if (k < per_lane) partial[r * D + lane + 32 * k] = acc[k];
  }
  if (lane == 0) {
    ml[2 * r] = m;
    ml[2 * r + 1] = l;
  }
  cg::cluster_group cluster = cg::this_cluster();
  cluster.sync();  // every block's states are written

  if (rank == 0) {
    const float* parts[kClusterBlocks];
    for (int c = 0; c < kClusterBlocks; ++c) parts[c] = cluster.map_shared_rank(tile, c);
    const int nope = D - a.rope_dims;
    const int pairs = D / 2;
    for (int i = threadIdx.x; i < heads_per_block * pairs; i += kThreadsFast) {
      const int hh = i / pairs;
      const int d = 2 * (i % pairs);
      const int w0 = hh * warps_per_head;  // the warps of head h0 + hh, in each block
      const float sink = a.sinks[h0 + hh];
      float top = sink;
      for (int c = 0; c < kClusterBlocks; ++c) {
        for (int w = w0; w < w0 + warps_per_head; ++w) {
          top = fmaxf(top, parts[c][kRowGroups * D + 2 * w]);
        }
      }
      float den = expf(sink - top);
      for (int c = 0; c < kClusterBlocks; ++c) {
        const float* state = parts[c] + kRowGroups * D;
        for (int w = w0; w < w0 + warps_per_head; ++w) {
          den += state[2 * w + 1] * expf(state[2 * w] - top);
        }
      }
      float o2[2] = {0.0f, 0.0f};
      for (int c = 0; c < kClusterBlocks; ++c) {
        for (int w = w0; w < w0 + warps_per_head; ++w) {
          // 0 for a warp that saw no row (m = -inf).
          const float weight = expf(parts[c][kRowGroups * D + 2 * w] - top);
          o2[0] += parts[c][w * D + d] * weight;
          o2[1] += parts[c][w * D + d + 1] * weight;
        }
      }
      o2[0] /= den;
      o2[1] /= den;
      if (d >= nope) rope_pair(o2, a.rope_freqs[(d - nope) / 2], pos, /*inverse=*/true);
      float* o = a.out + (t * a.heads + h0 + hh) * D;
      o[d] = o2[0];
      o[d + 1] = o2[1];
    }
  }
  cluster.sync();  // the other blocks keep their shared memory until block 0 has read it
#endif
}

__global__ void commit_window_kernel(const uint8_t* chunk_rows, int64_t row_bytes, int64_t first,
                                     int64_t first_committed, int64_t window_size,
                                     uint8_t* window) {
  const int64_t p = first_committed + blockIdx.x;
  const auto* src = reinterpret_cast<const uint32_t*>(chunk_rows + (p - first) * row_bytes);
  auto* dst = reinterpret_cast<uint32_t*>(window + (p % window_size) * row_bytes);
  for (int64_t i = threadIdx.x; i < row_bytes / 4; i += blockDim.x) dst[i] = src[i];
}

bool power_of_two(int x) { return x > 0 && (x & (x - 1)) == 0; }

// Per device, once (these driver calls would otherwise cost microseconds in every layer of every
// decode step): whether it has thread block clusters (compute capability 9.0 or later), and, if
// so, the fast kernel allowed its largest shared memory (kTileRows rows of kMaxDims floats).
bool clusters_available() {
  return once_per_device([](int device) {
    int major = 0;
    MAGNETAR_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    if (major < 9) return false;
    const int bytes = static_cast<int>(sizeof(float) *
                                       std::max(kTileRows * kMaxDims, kRowGroups * (kMaxDims + 2)));
    MAGNETAR_CUDA_CHECK(cudaFuncSetAttribute(fast_attention_kernel,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
    return true;
  });
}

// Whether the fast kernel takes these shapes and this device: thread block clusters, power-of-two
// dims held in registers (32 to 512) and an FP8 or float32 row format that load4 reads four values
// at a time.
bool fast_supported(const SparseAttention& a) {
  const RowCodec& c = a.codec;
  return clusters_available() && power_of_two(a.head_dim) && a.head_dim >= 32 &&
         a.head_dim <= kMaxDims && c.dims == a.head_dim && c.quant_dims % 4 == 0 &&
         power_of_two(c.block) && (c.quant_dims == 0 || (c.block % 4 == 0 && !c.format.fp4));
}

// Heads per cluster: 1 below kSharedRowsTokens queries per call (decode: the 64 heads of a token
// spread over 128 SMs, and a token's result is the same in any batch of such steps), otherwise the
// largest power of two ≤ 16 dividing the head count (prefill: the rows of a token are read and
// decoded once for 16 heads instead of once per head, 16× less L2 traffic). The merge of the
// warps' softmax states then runs over fewer warps per head, so prefill results differ from
// decode's in the last bits, as the tensor-core products already make them.
constexpr int64_t kSharedRowsTokens = 32;
int heads_per_cluster(const SparseAttention& a) {
  int heads_per_block = 1;
  if (a.n_tokens < kSharedRowsTokens) return heads_per_block;
  while (2 * heads_per_block <= kRowGroups && a.heads % (2 * heads_per_block) == 0) {
    heads_per_block *= 2;
  }
  return heads_per_block;
}

void fast_attention(const SparseAttention& a, cudaStream_t stream) {
  const size_t tile = static_cast<size_t>(kTileRows) * a.head_dim;
  const size_t partial = static_cast<size_t>(kRowGroups) * (a.head_dim + 2);
  const int bytes = static_cast<int>(sizeof(float) * std::max(tile, partial));  // allowed once
  const int heads_per_block = heads_per_cluster(a);
  fast_attention_kernel<<<static_cast<unsigned>(a.n_tokens * (a.heads / heads_per_block) *
                                                kClusterBlocks),
                          kThreadsFast, bytes, stream>>>(a, heads_per_block);
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
