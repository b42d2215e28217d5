// Hyper-connection kernels (hyper_connections.cuh); cpu/hyper_connections.cc is the reference.
#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/hyper_connections.cuh"
#include "backend/cuda/linear.cuh"
#include "backend/cuda/numerics_device.cuh"

namespace magnetar::gpu {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxStreams = 16;  // HC is 4 in every V4 model
// The fast mixer holds one comb entry per lane of a warp, so it takes HC <= 5.
constexpr int kMaxWarpStreams = 5;
// Loads in flight per thread in the fast RMS: a whole 4 × 4096 state with 256 threads, one round
// trip to memory instead of four.
constexpr int kRmsBatch = 64;
// Blocks per token of the fast kernels: enough to spread a decode step over the SMs, few enough
// that the per-block recomputation of the token's RMS (a 64 KB read at D = 4096) stays cheap.
constexpr int64_t kTargetBlocks = 256;

struct HcShape {
  int hc;
  int64_t dim;  // D
  int mix;
  int sinkhorn_iters;
  float hc_eps;
  float rms_eps;
};

HcShape shape_of(const model::ModelConfig& c) {
  if (c.hc_count < 1 || c.hc_count > kMaxStreams) {
    throw std::invalid_argument("the CUDA backend supports 1 to 16 hyper-connection streams");
  }
  return {static_cast<int>(c.hc_count),          c.n_embd, static_cast<int>(c.hc_mix()),
          static_cast<int>(c.hc_sinkhorn_iters), c.hc_eps, c.rms_eps};
}

__device__ float sigmoid(float x) { return 1.0f / (1.0f + exp_f32(-x)); }

// The mixer logits' scaling 1 / rms(X) of one token's flattened streams (cpu mixer_logits): the
// squares in double, divided in double, the rest in fp32.
__device__ float inverse_rms(const float* Xt, int64_t flat, float eps) {
  double sq = 0.0;
  for (int64_t i = threadIdx.x; i < flat; i += blockDim.x) {
    sq += static_cast<double>(Xt[i]) * static_cast<double>(Xt[i]);
  }
  sq = block_sum(sq);
  return 1.0f / sqrtf(static_cast<float>(sq / static_cast<double>(flat)) + eps);
}

// inverse_rms's bits (the same 256-thread strided order, squares in double) with kRmsBatch loads in
// flight per thread: the plain loop waits for each load before the next add. Past the end a load
// reads the last value again (and is not summed), so that no load sits behind a branch.
__device__ float inverse_rms_batched(const float* __restrict__ Xt, int64_t flat, float eps) {
  double sq = 0.0;
  const int64_t stride = blockDim.x;
  for (int64_t base = threadIdx.x; base < flat; base += kRmsBatch * stride) {
    float v[kRmsBatch];
#pragma unroll
    for (int b = 0; b < kRmsBatch; ++b) v[b] = Xt[min(base + b * stride, flat - 1)];
#pragma unroll
    for (int b = 0; b < kRmsBatch; ++b) {
      if (base + b * stride < flat) sq += static_cast<double>(v[b]) * static_cast<double>(v[b]);
    }
  }
  sq = block_sum(sq);
  return 1.0f / sqrtf(static_cast<float>(sq / static_cast<double>(flat)) + eps);
}

// cpu sinkhorn: one softmax row step, then alternating column and row normalizations.
__device__ void sinkhorn(float* C, int n, int iters, float eps) {
  for (int j = 0; j < n; ++j) {
    float* row = C + j * n;
    float m = row[0];
    for (int k = 1; k < n; ++k) m = fmaxf(m, row[k]);
    float sum = 0;
    for (int k = 0; k < n; ++k) sum += (row[k] = exp_f32(row[k] - m));
    for (int k = 0; k < n; ++k) row[k] = row[k] / sum + eps;
  }
  auto normalize_columns = [&] {
    for (int k = 0; k < n; ++k) {
      float sum = 0;
      for (int j = 0; j < n; ++j) sum += C[j * n + k];
      for (int j = 0; j < n; ++j) C[j * n + k] /= sum + eps;
    }
  };
  normalize_columns();
  for (int it = 1; it < iters; ++it) {
    for (int j = 0; j < n; ++j) {
      float sum = 0;
      for (int k = 0; k < n; ++k) sum += C[j * n + k];
      for (int k = 0; k < n; ++k) C[j * n + k] /= sum + eps;
    }
    normalize_columns();
  }
}

// One block per token. `mixer` holds the token's raw mixer GEMV outputs.
__global__ void hc_pre_kernel(HcShape s, const float* scale, const float* base, const float* X,
                              const float* mixer, float* y, float* post, float* comb) {
  __shared__ float pre[kMaxStreams];
  __shared__ float C[kMaxStreams * kMaxStreams];
  const int64_t t = blockIdx.x;
  const float* Xt = X + t * s.hc * s.dim;
  const float r = inverse_rms(Xt, s.hc * s.dim, s.rms_eps);
  if (threadIdx.x == 0) {
    const float* m = mixer + t * s.mix;
    const int hc = s.hc;
    for (int h = 0; h < hc; ++h) {
      pre[h] = sigmoid((m[h] * r) * scale[0] + base[h]) + s.hc_eps;
      post[t * hc + h] = 2.0f * sigmoid((m[hc + h] * r) * scale[1] + base[hc + h]);
    }
    for (int i = 0; i < hc * hc; ++i) C[i] = (m[2 * hc + i] * r) * scale[2] + base[2 * hc + i];
    sinkhorn(C, hc, s.sinkhorn_iters, s.hc_eps);
    for (int i = 0; i < hc * hc; ++i) comb[t * hc * hc + i] = C[i];
  }
  __syncthreads();
  for (int64_t d = threadIdx.x; d < s.dim; d += blockDim.x) {
    float sum = 0;
    for (int h = 0; h < s.hc; ++h) sum += pre[h] * Xt[h * s.dim + d];
    y[t * s.dim + d] = sum;
  }
}

// Grid (token, destination stream k).
__global__ void hc_post_kernel(HcShape s, const float* post, const float* comb, const float* f,
                               const float* X_in, float* X_out) {
  const int64_t t = blockIdx.x;
  const int k = static_cast<int>(blockIdx.y);
  const float p = post[t * s.hc + k];
  const float* C = comb + t * s.hc * s.hc;
  const float* old = X_in + t * s.hc * s.dim;
  for (int64_t d = threadIdx.x; d < s.dim; d += blockDim.x) {
    float sum = p * f[t * s.dim + d];
    for (int j = 0; j < s.hc; ++j) sum += C[j * s.hc + k] * old[j * s.dim + d];
    X_out[(t * s.hc + k) * s.dim + d] = sum;
  }
}

__global__ void hc_head_kernel(HcShape s, const float* scale, const float* base, const float* X,
                               const float* mixer, float* y) {
  __shared__ float w[kMaxStreams];
  const int64_t t = blockIdx.x;
  const float* Xt = X + t * s.hc * s.dim;
  const float r = inverse_rms(Xt, s.hc * s.dim, s.rms_eps);
  if (threadIdx.x == 0) {
    for (int h = 0; h < s.hc; ++h) {
      w[h] = sigmoid((mixer[t * s.hc + h] * r) * scale[0] + base[h]) + s.hc_eps;
    }
  }
  __syncthreads();
  for (int64_t d = threadIdx.x; d < s.dim; d += blockDim.x) {
    float sum = 0;
    for (int h = 0; h < s.hc; ++h) sum += w[h] * Xt[h * s.dim + d];
    y[t * s.dim + d] = sum;
  }
}

// ---- The fast kernels: the reference's bits, spread over more threads and blocks. ----

// sinkhorn() by one warp, lane j·HC + k holding C[j][k] (lanes from HC·HC on carry unused values).
// Every sum reads the row or column through shuffles in the reference's order, so the result is
// the reference's to the bit; the HC sequential divisions per step run in parallel instead, and
// with HC a compile-time constant the HC shuffles of a sum are in flight together.
template <int HC>
__device__ float warp_sinkhorn(float c, int iters, float eps) {
  const int lane = static_cast<int>(threadIdx.x % 32);
  const int j = lane / HC;
  const int k = lane % HC;
  auto at = [&](float v, int row, int col) { return __shfl_sync(0xffffffffu, v, row * HC + col); };
  float m = at(c, j, 0);
#pragma unroll
  for (int kk = 1; kk < HC; ++kk) m = fmaxf(m, at(c, j, kk));
  const float e = exp_f32(c - m);
  float sum = 0;
#pragma unroll
  for (int kk = 0; kk < HC; ++kk) sum += at(e, j, kk);
  c = e / sum + eps;
  auto normalize_column = [&] {
    float col = 0;
#pragma unroll
    for (int jj = 0; jj < HC; ++jj) col += at(c, jj, k);
    c /= col + eps;
  };
  normalize_column();
  for (int it = 1; it < iters; ++it) {
    float row = 0;
#pragma unroll
    for (int kk = 0; kk < HC; ++kk) row += at(c, j, kk);
    c /= row + eps;
    normalize_column();
  }
  return c;
}

// The chunk of [0, dim) that block blockIdx.y of `chunks` covers.
struct Chunk {
  int64_t begin, end;
};
__device__ Chunk chunk_of(int64_t dim, int64_t chunks) {
  const int64_t size = (dim + chunks - 1) / chunks;
  const int64_t begin = static_cast<int64_t>(blockIdx.y) * size;
  return {begin, min(dim, begin + size)};
}

// y[d] = Σ_h w[h] · Xt[h][d] over the block's chunk, h ascending (the reference's order).
template <int HC>
__device__ void weighted_stream_sum(const float* w, const float* __restrict__ Xt, int64_t dim,
                                    int64_t chunks, float* __restrict__ y) {
  const Chunk c = chunk_of(dim, chunks);
  for (int64_t d = c.begin + threadIdx.x; d < c.end; d += blockDim.x) {
    float sum = 0;
#pragma unroll
    for (int h = 0; h < HC; ++h) sum += w[h] * Xt[h * dim + d];
    y[d] = sum;
  }
}

// hc_pre_kernel's results with grid (token, chunk of D + 1). Every block computes the token's RMS
// (the same bits in each) with the mixer inputs it needs loaded beforehand; the chunk blocks then
// write their chunk of y, which needs only the pre weights, while the last block alone runs the
// Sinkhorn chain (40 dependent steps at 20 iterations) and stores the mix, so y no longer waits for
// Sinkhorn.
template <int HC>
__global__ void hc_pre_fast_kernel(HcShape s, const float* scale, const float* base,
                                   const float* __restrict__ X, const float* mixer,
                                   float* __restrict__ y, float* post, float* comb) {
  __shared__ float pre[HC];
  const int64_t t = blockIdx.x;
  const float* Xt = X + t * HC * s.dim;
  const float* m = mixer + t * s.mix;
  const int64_t chunks = gridDim.y - 1;
  const bool mix_block = blockIdx.y == chunks;
  const int lane = static_cast<int>(threadIdx.x);
  // Warp 0's mixer inputs: the pre (or post) weight of stream `lane`, comb entry `lane`.
  float m_pre = 0, b_pre = 0, s_pre = 0, m_comb = 0, b_comb = 0, s_comb = 0;
  if (lane < HC) {
    const int i = mix_block ? HC + lane : lane;
    m_pre = m[i];
    b_pre = base[i];
    s_pre = scale[mix_block ? 1 : 0];
  }
  if (mix_block && lane < 32) {
    const int i = lane < HC * HC ? lane : 0;
    m_comb = m[2 * HC + i];
    b_comb = base[2 * HC + i];
    s_comb = scale[2];
  }
  const float r = inverse_rms_batched(Xt, HC * s.dim, s.rms_eps);
  if (!mix_block) {
    if (lane < HC) pre[lane] = sigmoid((m_pre * r) * s_pre + b_pre) + s.hc_eps;
    __syncthreads();
    weighted_stream_sum<HC>(pre, Xt, s.dim, chunks, y + t * s.dim);
    return;
  }
  if (lane >= 32) return;
  if (lane < HC) post[t * HC + lane] = 2.0f * sigmoid((m_pre * r) * s_pre + b_pre);
  const float C = warp_sinkhorn<HC>((m_comb * r) * s_comb + b_comb, s.sinkhorn_iters, s.hc_eps);
  if (lane < HC * HC) comb[t * HC * HC + lane] = C;
}

// hc_post_kernel's results, one thread per output value (flat index over [T][HC][D]).
__global__ void hc_post_fast_kernel(HcShape s, int64_t n, const float* post, const float* comb,
                                    const float* __restrict__ f, const float* __restrict__ X_in,
                                    float* __restrict__ X_out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const int64_t d = i % s.dim;
  const int64_t tk = i / s.dim;
  const int k = static_cast<int>(tk % s.hc);
  const int64_t t = tk / s.hc;
  const float* C = comb + t * s.hc * s.hc;
  const float* old = X_in + t * s.hc * s.dim;
  float sum = post[tk] * f[t * s.dim + d];
  for (int j = 0; j < s.hc; ++j) sum += C[j * s.hc + k] * old[j * s.dim + d];
  X_out[i] = sum;
}

// hc_head_kernel's results with grid (token, chunk of D), each block computing the token's RMS.
__global__ void hc_head_fast_kernel(HcShape s, const float* scale, const float* base,
                                    const float* __restrict__ X, const float* mixer,
                                    float* __restrict__ y) {
  __shared__ float w[kMaxStreams];
  const int64_t t = blockIdx.x;
  const float* Xt = X + t * s.hc * s.dim;
  const float r = inverse_rms_batched(Xt, s.hc * s.dim, s.rms_eps);
  if (threadIdx.x < s.hc) {
    const int h = static_cast<int>(threadIdx.x);
    w[h] = sigmoid((mixer[t * s.hc + h] * r) * scale[0] + base[h]) + s.hc_eps;
  }
  __syncthreads();
  const int64_t chunks = gridDim.y;
  const Chunk c = chunk_of(s.dim, chunks);
  for (int64_t d = c.begin + threadIdx.x; d < c.end; d += blockDim.x) {
    float sum = 0;
    for (int h = 0; h < s.hc; ++h) sum += w[h] * Xt[h * s.dim + d];
    y[t * s.dim + d] = sum;
  }
}

// The fast kernels' grid: (token, chunk of D), about kTargetBlocks blocks in all; hc_pre adds one
// block per token for the mix.
dim3 chunk_grid(const HcShape& s, int64_t n_tokens, int extra = 0) {
  const int64_t by_tokens = (kTargetBlocks + n_tokens - 1) / n_tokens;
  const int64_t by_dim = (s.dim + kThreads - 1) / kThreads;
  return dim3(static_cast<unsigned>(n_tokens),
              static_cast<unsigned>(std::max<int64_t>(1, std::min(by_tokens, by_dim)) + extra));
}

template <int HC>
void launch_hc_pre_fast(const HcShape& s, const DeviceHyperConnection& w, const float* X,
                        int64_t n_tokens, float* y, HcMixDevice mix, const float* mixer,
                        cudaStream_t stream) {
  hc_pre_fast_kernel<HC><<<chunk_grid(s, n_tokens, 1), kThreads, 0, stream>>>(
      s, w.scale, w.base, X, mixer, y, mix.post, mix.comb);
}

}  // namespace

void hc_pre_cuda(const model::ModelConfig& c, const DeviceHyperConnection& w, const float* X,
                 int64_t n_tokens, float* y, HcMixDevice mix, float* mixer, cudaStream_t stream) {
  const HcShape s = shape_of(c);
  if (n_tokens <= 0) return;
  linear_cuda(w.fn, X, n_tokens, mixer, stream);
  if (reference_order() || s.hc > kMaxWarpStreams) {
    hc_pre_kernel<<<static_cast<unsigned>(n_tokens), kThreads, 0, stream>>>(
        s, w.scale, w.base, X, mixer, y, mix.post, mix.comb);
  } else {
    using Launch = void (*)(const HcShape&, const DeviceHyperConnection&, const float*, int64_t,
                            float*, HcMixDevice, const float*, cudaStream_t);
    constexpr Launch launch[kMaxWarpStreams] = {launch_hc_pre_fast<1>, launch_hc_pre_fast<2>,
                                                launch_hc_pre_fast<3>, launch_hc_pre_fast<4>,
                                                launch_hc_pre_fast<5>};
    launch[s.hc - 1](s, w, X, n_tokens, y, mix, mixer, stream);
  }
  MAGNETAR_CUDA_CHECK(cudaGetLastError());
}

void hc_post_cuda(const model::ModelConfig& c, HcMixDevice mix, const float* f, const float* X_in,
                  int64_t n_tokens, float* X_out, cudaStream_t stream) {
  const HcShape s = shape_of(c);
  if (n_tokens <= 0) return;
  if (reference_order()) {
    hc_post_kernel<<<dim3(static_cast<unsigned>(n_tokens), static_cast<unsigned>(s.hc)), kThreads,
                     0, stream>>>(s, mix.post, mix.comb, f, X_in, X_out);
  } else {
    const int64_t n = n_tokens * s.hc * s.dim;
    hc_post_fast_kernel<<<static_cast<unsigned>((n + kThreads - 1) / kThreads), kThreads, 0,
                          stream>>>(s, n, mix.post, mix.comb, f, X_in, X_out);
  }
  MAGNETAR_CUDA_CHECK(cudaGetLastError());
}

void hc_head_cuda(const model::ModelConfig& c, const DeviceMatrix& fn, const float* scale,
                  const float* base, const float* X, int64_t n_tokens, float* y, float* mixer,
                  cudaStream_t stream) {
  const HcShape s = shape_of(c);
  if (n_tokens <= 0) return;
  linear_cuda(fn, X, n_tokens, mixer, stream);
  if (reference_order()) {
    hc_head_kernel<<<static_cast<unsigned>(n_tokens), kThreads, 0, stream>>>(s, scale, base, X,
                                                                             mixer, y);
  } else {
    hc_head_fast_kernel<<<chunk_grid(s, n_tokens), kThreads, 0, stream>>>(s, scale, base, X, mixer,
                                                                          y);
  }
  MAGNETAR_CUDA_CHECK(cudaGetLastError());
}

}  // namespace magnetar::gpu
