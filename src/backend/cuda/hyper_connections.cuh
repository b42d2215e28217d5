// Manifold-constrained hyper-connections on the GPU, the twins of cpu/hyper_connections.h
// (model.md §5): hc_pre mixes the HC streams of each token into one sublayer input, hc_post writes
// the sublayer output back into every stream, hc_head collapses the streams before the LM head.
// The mixer GEMV runs through linear_cuda; the per-token maths (RMS scaling, sigmoids, Sinkhorn,
// the stream sums) keeps the CPU's operation order in both of the kernel sets that
// reference_order() (linear.cuh) chooses between: the reference kernels run one block per token
// and Sinkhorn on one thread; the fast ones spread a token over blocks (each recomputing the
// token's RMS in the same order, all its loads in flight at once) and run Sinkhorn on one warp of
// a block of its own, beside the ones writing y, one matrix entry per lane, reading
// rows and columns in the same order. Both give the same bits for the same mixer outputs, whatever
// the batch; the fast hc_pre needs HC <= 5 (4 in every V4 model) and takes the reference kernel
// otherwise. No device code here.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "backend/cuda/device_weights.h"
#include "model/model_config.h"

namespace magnetar::gpu {

// The per-token mix of hc_pre, kept on the device for the matching hc_post.
struct HcMixDevice {
  float* post = nullptr;  // [T][HC]
  float* comb = nullptr;  // [T][HC][HC]; comb[j][k]: from source stream j to destination k
};

// hc_pre for n_tokens states X ([T][HC][D]): writes the sublayer inputs y ([T][D]) and the mix.
// `mixer` is scratch for T · hc_mix() floats.
void hc_pre_cuda(const model::ModelConfig& c, const DeviceHyperConnection& w, const float* X,
                 int64_t n_tokens, float* y, HcMixDevice mix, float* mixer, cudaStream_t stream);

// hc_post: X_out[k] = post[k] · f + Σ_j comb[j][k] · X_in[j] for each token (out of place).
void hc_post_cuda(const model::ModelConfig& c, HcMixDevice mix, const float* f, const float* X_in,
                  int64_t n_tokens, float* X_out, cudaStream_t stream);

// hc_head (model.md §5.3): y ([T][D]) from X ([T][HC][D]); `mixer` is scratch for T · HC floats.
void hc_head_cuda(const model::ModelConfig& c, const DeviceMatrix& fn, const float* scale,
                  const float* base, const float* X, int64_t n_tokens, float* y, float* mixer,
                  cudaStream_t stream);

}  // namespace magnetar::gpu
