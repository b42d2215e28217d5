// Indexer scores and top-k (indexer.cuh); cpu attention.cc indexer_select is the reference.
#include <cuda_runtime.h>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/indexer.cuh"
#include "backend/cuda/linear.cuh"

namespace magnetar::gpu {
namespace {

constexpr int kThreads = 128;

// Rows visible to the query at `position`: those emitted at or before it.
__host__ __device__ int64_t visible_rows(int64_t position) { return (position + 1) / 4; }

// Grid (query, row tile): one thread per (query, row), for queries that must choose.
__global__ void indexer_scores_kernel(IndexerQuery a) {
  const int64_t t = blockIdx.x;
  const int64_t n = visible_rows(a.first + t);
  const int64_t i = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  if (n <= a.top_k || i >= n) return;
  const uint8_t* k = a.rows + i * a.codec.row_bytes();
  const float* q = a.q + t * a.heads * a.dim;
  const float* w = a.weights + t * a.heads;
  float s = 0;
  for (int h = 0; h < a.heads; ++h) {
    const float* qh = q + h * a.dim;
    float dot = 0;
    for (int d = 0; d < a.dim; ++d) dot += qh[d] * a.codec.value(k, d);
    s += fmaxf(dot, 0.0f) * (w[h] * a.weight_scale);
  }
  a.scores[t * a.max_rows + i] = s;
}

// The same scores with the row decoded once for all heads: each thread keeps one running dot
// product per head (kMaxFastHeads registers) and walks the row's dims once, with the query
// transposed in shared memory. Every dot product still sums its dims in increasing order with the
// same separately rounded products (the library is built with -fmad=false), and the heads are
// summed in the same order, so the scores, and therefore the choice, are bit-identical to
// indexer_scores_kernel's.
constexpr int kMaxFastHeads = 64;

__global__ void indexer_scores_fast_kernel(IndexerQuery a) {
  extern __shared__ float q_t[];  // [dim][heads]
  const int64_t t = blockIdx.x;
  const int64_t n = visible_rows(a.first + t);
  if (n <= a.top_k) return;
  const float* q = a.q + t * a.heads * a.dim;
  for (int i = threadIdx.x; i < a.heads * a.dim; i += blockDim.x) {
    const int h = i / a.dim, d = i % a.dim;
    q_t[d * a.heads + h] = q[i];
  }
  __syncthreads();
  const int64_t i = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const uint8_t* k = a.rows + i * a.codec.row_bytes();
  float dot[kMaxFastHeads];
#pragma unroll
  for (int h = 0; h < kMaxFastHeads; ++h) dot[h] = 0.0f;
  for (int d = 0; d < a.dim; ++d) {
    const float v = a.codec.value(k, d);
    const float* qd = q_t + d * a.heads;
#pragma unroll
    for (int h = 0; h < kMaxFastHeads; ++h) {
      if (h < a.heads) dot[h] += qd[h] * v;
    }
  }
  const float* w = a.weights + t * a.heads;
  float s = 0;
#pragma unroll
  for (int h = 0; h < kMaxFastHeads; ++h) {
    if (h < a.heads) s += fmaxf(dot[h], 0.0f) * (w[h] * a.weight_scale);
  }
  a.scores[t * a.max_rows + i] = s;
}

// One thread block per query: row i is kept when fewer than top_k rows beat it (higher score, or
// equal score and lower index), and its rank is its place in the list.
__global__ void indexer_topk_kernel(IndexerQuery a, int32_t* selected, int32_t* count) {
  const int64_t t = blockIdx.x;
  const int64_t n = visible_rows(a.first + t);
  int32_t* sel = selected + t * a.top_k;
  if (n <= a.top_k) {
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) sel[j] = static_cast<int32_t>(j);
    if (threadIdx.x == 0) count[t] = static_cast<int32_t>(n);
    return;
  }
  const float* s = a.scores + t * a.max_rows;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const float si = s[i];
    int64_t rank = 0;
    for (int64_t j = 0; j < n && rank < a.top_k; ++j) {
      const float sj = s[j];
      rank += sj > si || (sj == si && j < i);
    }
    if (rank < a.top_k) sel[rank] = static_cast<int32_t>(i);
  }
  if (threadIdx.x == 0) count[t] = a.top_k;
}

// The same choice in O(n) per query: a radix select finds the top_k-th largest score (8 bits a
// pass, most significant first, on keys ordered like the floats), the rows above it are kept, and
// of the rows equal to it the lowest indices, found by a block-wide scan in index order; then a
// bitonic sort in shared memory puts the kept rows in the reference's order (score descending,
// index ascending). Every step is exact, so the list is the reference kernel's.
constexpr int kTopkThreads = 1024;
constexpr int64_t kFastTopkRows = 256;

// An unsigned key ordered like the score (−0 taken as +0, as the float comparison does).
__device__ __forceinline__ uint32_t order_key(float f) {
  const uint32_t u = __float_as_uint(f == 0.0f ? 0.0f : f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__global__ void __launch_bounds__(kTopkThreads)
    indexer_topk_fast_kernel(IndexerQuery a, int sort_size, int32_t* selected, int32_t* count) {
  extern __shared__ uint64_t kept[];  // [sort_size]: key << 32 | ~index, sorted descending
  __shared__ uint32_t histogram[256];
  __shared__ uint32_t prefix, prefix_bits, wanted, taken, flags[kTopkThreads / 32];
  const int64_t t = blockIdx.x;
  const int64_t n = visible_rows(a.first + t);
  int32_t* sel = selected + t * a.top_k;
  if (n <= a.top_k) {
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) sel[j] = static_cast<int32_t>(j);
    if (threadIdx.x == 0) count[t] = static_cast<int32_t>(n);
    return;
  }
  const float* s = a.scores + t * a.max_rows;
  if (threadIdx.x == 0) {
    prefix = 0;
    prefix_bits = 0;
    wanted = a.top_k;  // how many of the keys matching the prefix are still to keep
  }
  // Radix select: after the pass over bits [shift, shift + 8) `prefix` holds the top bits of the
  // top_k-th largest key and `wanted` its rank among the keys that share them.
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < 256; b += blockDim.x) histogram[b] = 0;
    __syncthreads();
    const uint32_t mask = prefix_bits == 0 ? 0u : ~0u << (32 - prefix_bits);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      const uint32_t key = order_key(s[i]);
      if ((key & mask) == prefix) atomicAdd(&histogram[(key >> shift) & 255u], 1u);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      uint32_t above = 0;
      int b = 255;
      while (above + histogram[b] < wanted) above += histogram[b--];
      prefix |= static_cast<uint32_t>(b) << shift;
      prefix_bits += 8;
      wanted -= above;
    }
    __syncthreads();
  }
  const uint32_t threshold = prefix;  // the top_k-th largest key; keep `wanted` of its equals
  if (threadIdx.x == 0) taken = 0;
  for (int i = threadIdx.x; i < sort_size; i += blockDim.x) kept[i] = 0;  // sorts last
  __syncthreads();
  // Keep every key above the threshold and the first `wanted` equal ones in index order.
  uint32_t equal_before = 0;  // equal keys in earlier rounds (the same in every thread)
  for (int64_t base = 0; base < n; base += blockDim.x) {
    const int64_t i = base + threadIdx.x;
    const uint32_t key = i < n ? order_key(s[i]) : 0u;
    const bool equal = i < n && key == threshold;
    const unsigned ballot = __ballot_sync(0xffffffffu, equal);
    if (threadIdx.x % 32 == 0) flags[threadIdx.x / 32] = __popc(ballot);
    __syncthreads();
    uint32_t rank = equal_before + __popc(ballot & ((1u << (threadIdx.x % 32)) - 1u));
    for (int w = 0; w < static_cast<int>(threadIdx.x / 32); ++w) rank += flags[w];
    if (i < n && (key > threshold || (equal && rank < wanted))) {
      const uint32_t slot = atomicAdd(&taken, 1u);
      kept[slot] = static_cast<uint64_t>(key) << 32 | static_cast<uint32_t>(~i);
    }
    for (int w = 0; w < kTopkThreads / 32; ++w) equal_before += flags[w];
    __syncthreads();  // flags are rewritten next round
  }
  // Bitonic sort, descending: larger key first, then lower index (larger ~index).
  for (int size = 2; size <= sort_size; size *= 2) {
    for (int stride = size / 2; stride > 0; stride /= 2) {
      for (int i = threadIdx.x; i < sort_size; i += blockDim.x) {
        const int j = i ^ stride;
        if (j > i) {
          const bool descending = (i & size) == 0;
          const uint64_t x = kept[i], y = kept[j];
          if (descending ? x < y : x > y) {
            kept[i] = y;
            kept[j] = x;
          }
        }
      }
      __syncthreads();
    }
  }
  for (int i = threadIdx.x; i < a.top_k; i += blockDim.x) {
    sel[i] = static_cast<int32_t>(~static_cast<uint32_t>(kept[i]));
  }
  if (threadIdx.x == 0) count[t] = a.top_k;
}

}  // namespace

void indexer_select_cuda(const IndexerQuery& a, int32_t* selected, int32_t* count,
                         cudaStream_t stream) {
  if (a.n_tokens <= 0) return;
  const int64_t rows = visible_rows(a.first + a.n_tokens - 1);
  if (rows > a.top_k) {
    const dim3 grid(static_cast<unsigned>(a.n_tokens),
                    static_cast<unsigned>((rows + kThreads - 1) / kThreads));
    const size_t q_bytes = sizeof(float) * a.heads * a.dim;
    if (!reference_order() && a.heads <= kMaxFastHeads && q_bytes <= 48 * 1024) {
      indexer_scores_fast_kernel<<<grid, kThreads, q_bytes, stream>>>(a);
    } else {
      indexer_scores_kernel<<<grid, kThreads, 0, stream>>>(a);
    }
    MAGNETAR_CUDA_CHECK(cudaGetLastError());
  }
  int sort_size = 1;
  while (sort_size < a.top_k) sort_size *= 2;
  const size_t sort_bytes = sizeof(uint64_t) * sort_size;
  // The quadratic kernel wins for a few hundred rows (measured: 5 us against 36 us at 35 rows,
  // 207 us against 52 us at 512); the choice is the same either way.
  if (!reference_order() && rows > kFastTopkRows && sort_bytes <= 48 * 1024) {
    indexer_topk_fast_kernel<<<static_cast<unsigned>(a.n_tokens), kTopkThreads, sort_bytes,
                               stream>>>(a, sort_size, selected, count);
  } else {
    indexer_topk_kernel<<<static_cast<unsigned>(a.n_tokens), kThreads, 0, stream>>>(a, selected,
                                                                                    count);
  }
  MAGNETAR_CUDA_CHECK(cudaGetLastError());
}

}  // namespace magnetar::gpu
