// Sparse attention kernels (sparse_attention.cuh); cpu attention.cc attention_chunk is the
// reference.
#include <cuda_runtime.h>

#include <algorithm>

#include "backend/cuda/cuda_check.h"
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

__global__ void commit_window_kernel(const uint8_t* chunk_rows, int64_t row_bytes, int64_t first,
                                     int64_t first_committed, int64_t window_size,
                                     uint8_t* window) {
  const int64_t p = first_committed + blockIdx.x;
  const auto* src = reinterpret_cast<const uint32_t*>(chunk_rows + (p - first) * row_bytes);
  auto* dst = reinterpret_cast<uint32_t*>(window + (p % window_size) * row_bytes);
  for (int64_t i = threadIdx.x; i < row_bytes / 4; i += blockDim.x) dst[i] = src[i];
}

}  // namespace

void sparse_attention_cuda(const SparseAttention& a, cudaStream_t stream) {
  if (a.n_tokens <= 0) return;
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
