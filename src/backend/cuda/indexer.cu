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
  indexer_topk_kernel<<<static_cast<unsigned>(a.n_tokens), kThreads, 0, stream>>>(a, selected,
                                                                                  count);
  MAGNETAR_CUDA_CHECK(cudaGetLastError());
}

}  // namespace magnetar::gpu
