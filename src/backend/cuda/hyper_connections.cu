// Hyper-connection kernels (hyper_connections.cuh); cpu/hyper_connections.cc is the reference.
#include <cuda_runtime.h>

#include <stdexcept>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/hyper_connections.cuh"
#include "backend/cuda/linear.cuh"
#include "backend/cuda/numerics_device.cuh"

namespace magnetar::gpu {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxStreams = 16;  // HC is 4 in every V4 model

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

}  // namespace

void hc_pre_cuda(const model::ModelConfig& c, const DeviceHyperConnection& w, const float* X,
                 int64_t n_tokens, float* y, HcMixDevice mix, float* mixer, cudaStream_t stream) {
  const HcShape s = shape_of(c);
  if (n_tokens <= 0) return;
  linear_cuda(w.fn, X, n_tokens, mixer, stream);
  hc_pre_kernel<<<static_cast<unsigned>(n_tokens), kThreads, 0, stream>>>(
      s, w.scale, w.base, X, mixer, y, mix.post, mix.comb);
  MAGNETAR_CUDA_CHECK(cudaGetLastError());
}

void hc_post_cuda(const model::ModelConfig& c, HcMixDevice mix, const float* f, const float* X_in,
                  int64_t n_tokens, float* X_out, cudaStream_t stream) {
  const HcShape s = shape_of(c);
  if (n_tokens <= 0) return;
  hc_post_kernel<<<dim3(static_cast<unsigned>(n_tokens), static_cast<unsigned>(s.hc)), kThreads, 0,
                   stream>>>(s, mix.post, mix.comb, f, X_in, X_out);
  MAGNETAR_CUDA_CHECK(cudaGetLastError());
}

void hc_head_cuda(const model::ModelConfig& c, const DeviceMatrix& fn, const float* scale,
                  const float* base, const float* X, int64_t n_tokens, float* y, float* mixer,
                  cudaStream_t stream) {
  const HcShape s = shape_of(c);
  if (n_tokens <= 0) return;
  linear_cuda(fn, X, n_tokens, mixer, stream);
  hc_head_kernel<<<static_cast<unsigned>(n_tokens), kThreads, 0, stream>>>(s, scale, base, X, mixer,
                                                                           y);
  MAGNETAR_CUDA_CHECK(cudaGetLastError());
}

}  // namespace magnetar::gpu
