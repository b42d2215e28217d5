// KV compressor kernels (compressor.cuh); cpu attention.cc run_compressor and
// cpu/sequence_state.cc compressor_push are the reference.
#include <cuda_runtime.h>

#include <algorithm>

#include "backend/cuda/compressor.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/numerics_device.cuh"

namespace magnetar::gpu {
namespace {

constexpr int kThreads = 256;

struct ChunkArgs {
  int ratio, width, head_width, rope_pairs;
  const float* kv;
  const float* score;
  const float* state_kv;
  const float* state_score;
  uint8_t* rows;
  RowCodec codec;
  const float* norm;
  const float* freqs;
  float eps;
  bool hadamard;
  int64_t first;
};

// The projections of token i of block `block`: from the chunk for positions at or after its
// first, else from the block buffer the token went to (block % 2 for ratio 4; block -1, before
// the sequence, is buffer 1 whose scores start at -inf).
__device__ void token_of(const ChunkArgs& a, int64_t block, int i, const float** kv,
                         const float** score) {
  const int64_t p = block * a.ratio + i;
  if (p >= a.first) {
    *kv = a.kv + (p - a.first) * a.width;
    *score = a.score + (p - a.first) * a.width;
  } else {
    const int64_t buffer = a.ratio == 4 ? (block & 1) : 0;
    const int64_t offset = (buffer * a.ratio + i) * a.width;
    *kv = a.state_kv + offset;
    *score = a.state_score + offset;
  }
}

// One thread block per emitted row; dynamic shared memory holds the row.
__global__ void compressor_emit_kernel(ChunkArgs a) {
  extern __shared__ float row[];
  const int64_t block = a.first / a.ratio + blockIdx.x;
  const bool overlap = a.ratio == 4;
  const int own = overlap ? a.head_width : 0;  // column offset of this block's candidates
  for (int d = threadIdx.x; d < a.head_width; d += blockDim.x) {
    const float* kv;
    const float* sc;
    float m = -INFINITY;
    for (int i = 0; i < a.ratio; ++i) {
      token_of(a, block, i, &kv, &sc);
      m = fmaxf(m, sc[own + d]);
    }
    if (overlap) {
      for (int i = 0; i < a.ratio; ++i) {
        token_of(a, block - 1, i, &kv, &sc);
        m = fmaxf(m, sc[d]);
      }
    }
    float den = 0, num = 0;
    for (int i = 0; i < a.ratio; ++i) {
      token_of(a, block, i, &kv, &sc);
      const float e = exp_f32(sc[own + d] - m);
      den += e;
      num += e * kv[own + d];
    }
    if (overlap) {
      for (int i = 0; i < a.ratio; ++i) {
        token_of(a, block - 1, i, &kv, &sc);
        const float e = exp_f32(sc[d] - m);  // exp(-inf) = 0 before block 1
        den += e;
        num += e * kv[d];
      }
    }
    row[d] = num / den;
  }
  __syncthreads();
  cta_rms_norm(row, a.norm, a.head_width, a.eps);
  cta_rope(row + a.head_width - 2 * a.rope_pairs, a.freqs, a.rope_pairs, block * a.ratio, false);
  if (a.hadamard) cta_hadamard(row, a.head_width);
  cta_encode_row(row, a.codec, a.rows + block * a.codec.row_bytes());
}

// One thread block per stored token: the last writer of each buffer slot among the chunk's tokens.
__global__ void compressor_store_kernel(ChunkArgs a, int64_t first_stored, float* state_kv,
                                        float* state_score) {
  const int64_t p = first_stored + blockIdx.x;
  const int64_t buffer = a.ratio == 4 ? (p / a.ratio) & 1 : 0;
  const int64_t offset = (buffer * a.ratio + p % a.ratio) * a.width;
  const float* kv = a.kv + (p - a.first) * a.width;
  const float* sc = a.score + (p - a.first) * a.width;
  for (int i = threadIdx.x; i < a.width; i += blockDim.x) {
    state_kv[offset + i] = kv[i];
    state_score[offset + i] = sc[i];
  }
}

__global__ void position_bias_kernel(float* score, const float* ape, const int32_t* positions,
                                     int ratio, int64_t width) {
  const int64_t t = blockIdx.x;
  const float* bias = ape + (positions[t] % ratio) * width;
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) score[t * width + i] += bias[i];
}

}  // namespace

void compressor_chunk_cuda(const CompressorChunk& c, cudaStream_t stream) {
  DeviceCompressorState& s = *c.state;
  ChunkArgs a{};
  a.ratio = static_cast<int>(s.ratio);
  a.width = static_cast<int>(s.width);
  a.head_width = static_cast<int>(s.head_width);
  a.rope_pairs = c.rope_dims / 2;
  a.kv = c.kv;
  a.score = c.score;
  a.state_kv = s.kv.data();
  a.state_score = s.score.data();
  a.rows = s.rows.data();
  a.codec = c.codec;
  a.norm = c.norm;
  a.freqs = c.rope_freqs;
  a.eps = c.eps;
  a.hadamard = c.hadamard;
  a.first = c.first;
  const int64_t end = c.first + c.n_tokens;
  const int64_t emitted = end / s.ratio - c.first / s.ratio;
  if (emitted > 0) {
    const size_t shared = static_cast<size_t>(s.head_width) * sizeof(float);
    compressor_emit_kernel<<<static_cast<unsigned>(emitted), kThreads, shared, stream>>>(a);
    MAGNETAR_CUDA_CHECK(cudaGetLastError());
  }
  // A buffer slot is rewritten every buffers · ratio positions: only the chunk's last tokens can
  // be the final writers.
  const int64_t period = static_cast<int64_t>(s.buffers()) * s.ratio;
  const int64_t first_stored = std::max(c.first, end - period);
  if (end > first_stored) {
    compressor_store_kernel<<<static_cast<unsigned>(end - first_stored), kThreads, 0, stream>>>(
        a, first_stored, s.kv.data(), s.score.data());
    MAGNETAR_CUDA_CHECK(cudaGetLastError());
  }
}

void add_position_bias_cuda(float* score, const float* ape, const int32_t* positions,
                            int64_t n_tokens, int ratio, int64_t width, cudaStream_t stream) {
  if (n_tokens <= 0) return;
  position_bias_kernel<<<static_cast<unsigned>(n_tokens), kThreads, 0, stream>>>(
      score, ape, positions, ratio, width);
  MAGNETAR_CUDA_CHECK(cudaGetLastError());
}

}  // namespace magnetar::gpu
