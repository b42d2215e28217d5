// KV compressor kernels (compressor.cuh); cpu attention.cc run_compressor and
// cpu/sequence_state.cc compressor_push are the reference.
#include <cuda_runtime.h>

#include <algorithm>

#include "backend/cuda/compressor.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/linear.cuh"
#include "backend/cuda/numerics_device.cuh"

namespace magnetar::gpu {
namespace {

constexpr int kThreads = 256;  // also the order of the row's RMSNorm sums
constexpr int kPoolBatch = 8;  // candidate tokens of a pooled value loaded together (ratio 4: all)

struct ChunkArgs {
  int ratio, width, head_width, rope_pairs;
  const float* kv;
  const float* score;
  const float* ape;
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

// score[t][i] += ape[((first + t) % ratio) · width + i]: the position bias of the chunk's tokens,
// added before the reference kernels read the scores. One block per token.
__global__ void position_bias_kernel(float* score, const float* ape, int64_t first, int ratio,
                                     int64_t width) {
  const int64_t t = blockIdx.x;
  const float* bias = ape + ((first + t) % ratio) * width;
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) score[t * width + i] += bias[i];
}

// ---- The fast kernels: the reference's bits, a shorter critical path. ----

// Candidate c of the pooled value at column d of `block`'s row: c < ratio is the block's token c
// (columns from head_width on in ratio-4 layers), else token c − ratio of the block before
// (columns from 0); token_of's sources, the position bias added to a chunk token's score as
// position_bias_kernel adds it (a stored score already has it).
__device__ void candidate(const ChunkArgs& a, int64_t block, int c, int d, float* score,
                          float* kv) {
  const bool own = c < a.ratio;
  const int i = own ? c : c - a.ratio;
  const int col = own && a.ratio == 4 ? a.head_width + d : d;
  const int64_t b = own ? block : block - 1;
  const int64_t p = b * a.ratio + i;
  if (p >= a.first) {
    const int64_t offset = (p - a.first) * a.width + col;
    *score = a.score[offset] + a.ape[static_cast<int64_t>(i) * a.width + col];
    *kv = a.kv[offset];
  } else {
    const int64_t buffer = a.ratio == 4 ? (b & 1) : 0;
    const int64_t offset = (buffer * a.ratio + i) * a.width + col;
    *score = a.state_score[offset];
    *kv = a.state_kv[offset];
  }
}

// compressor_emit_kernel's rows. Each pooled value takes the same maximum and the same sums over
// the same candidates in the same order, with kPoolBatch candidates' loads in flight together
// (the reference waits for each); the RoPE table is computed meanwhile, the RMSNorm is the
// reference's (same block size), then RoPE from the table, the Hadamard transform in registers and
// the codes by a warp per block. Dynamic shared memory: the row, the RoPE table, and the Hadamard
// exchange (2 · head_width floats).
__device__ void fast_emit(const ChunkArgs& a, int64_t block) {
  extern __shared__ float smem[];
  float* row = smem;
  float* trig = row + a.head_width;
  float* exchange = trig + 2 * a.rope_pairs;
  cta_rope_table(trig, a.freqs, a.rope_pairs, block * a.ratio, false);
  const int candidates = a.ratio == 4 ? 2 * a.ratio : a.ratio;
  for (int d = threadIdx.x; d < a.head_width; d += blockDim.x) {
    float m = -INFINITY;
    for (int c0 = 0; c0 < candidates; c0 += kPoolBatch) {
      float sc[kPoolBatch] = {}, kv[kPoolBatch] = {};
#pragma unroll
      for (int j = 0; j < kPoolBatch; ++j) {
        if (c0 + j < candidates) candidate(a, block, c0 + j, d, &sc[j], &kv[j]);
      }
#pragma unroll
      for (int j = 0; j < kPoolBatch; ++j) {
        if (c0 + j < candidates) m = fmaxf(m, sc[j]);
      }
    }
    float den = 0, num = 0;
    for (int c0 = 0; c0 < candidates; c0 += kPoolBatch) {
      float sc[kPoolBatch] = {}, kv[kPoolBatch] = {};
#pragma unroll
      for (int j = 0; j < kPoolBatch; ++j) {
        if (c0 + j < candidates) candidate(a, block, c0 + j, d, &sc[j], &kv[j]);
      }
#pragma unroll
      for (int j = 0; j < kPoolBatch; ++j) {
        if (c0 + j < candidates) {
          const float e = exp_f32(sc[j] - m);  // exp(-inf) = 0 before block 1
          den += e;
          num += e * kv[j];
        }
      }
    }
    row[d] = num / den;
  }
  __syncthreads();
  cta_rms_norm(row, a.norm, a.head_width, a.eps);
  cta_rope_from(row + a.head_width - 2 * a.rope_pairs, trig, a.rope_pairs);
  if (a.hadamard) {
    const int n = a.head_width;
    if (n >= 32 && n <= static_cast<int>(blockDim.x) && (n & (n - 1)) == 0) {
      const float v = cta_hadamard_value(threadIdx.x < n ? row[threadIdx.x] : 0.0f, n, exchange);
      if (threadIdx.x < n) row[threadIdx.x] = v;
      __syncthreads();
    } else {
      cta_hadamard(row, n);
    }
  }
  cta_encode_row_fast(row, a.codec, a.rows + block * a.codec.row_bytes());
}

// compressor_store_kernel's value i of position p (one thread per value), the position bias added
// to the score on the way.
__device__ void fast_store(const ChunkArgs& a, int64_t p, int64_t i, float* state_kv,
                           float* state_score) {
  if (i >= a.width) return;
  const int64_t buffer = a.ratio == 4 ? (p / a.ratio) & 1 : 0;
  const int64_t offset = (buffer * a.ratio + p % a.ratio) * a.width;
  const int64_t source = (p - a.first) * a.width + i;
  state_kv[offset + i] = a.kv[source];
  state_score[offset + i] = a.score[source] + a.ape[(p % a.ratio) * a.width + i];
}

__global__ void compressor_emit_fast_kernel(ChunkArgs a) {
  fast_emit(a, a.first / a.ratio + blockIdx.x);
}

// Grid (stored token, chunk of the width).
__global__ void compressor_store_fast_kernel(ChunkArgs a, int64_t first_stored, float* state_kv,
                                             float* state_score) {
  fast_store(a, first_stored + blockIdx.x,
             static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x, state_kv, state_score);
}

// A decode step (one token) that completes a block, in one launch: block 0 emits the row, the
// others store the token. They need no order: the row reads from the buffers only tokens of its
// block and the one before (ratio 4) that precede this token by less than the buffers' period
// (2 · ratio, or ratio), so never the slot this token goes to.
__global__ void compressor_step_fast_kernel(ChunkArgs a, float* state_kv, float* state_score) {
  if (blockIdx.x == 0) {
    fast_emit(a, a.first / a.ratio);
  } else {
    fast_store(a, a.first, static_cast<int64_t>(blockIdx.x - 1) * blockDim.x + threadIdx.x,
               state_kv, state_score);
  }
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
  a.ape = c.ape;
  a.state_kv = s.kv.data();
  a.state_score = s.score.data();
  a.rows = s.rows.data();
  a.codec = c.codec;
  a.norm = c.norm;
  a.freqs = c.rope_freqs;
  a.eps = c.eps;
  a.hadamard = c.hadamard;
  a.first = c.first;
  if (c.n_tokens <= 0) return;
  const bool reference = reference_order();
  if (reference) {
    position_bias_kernel<<<static_cast<unsigned>(c.n_tokens), kThreads, 0, stream>>>(
        c.score, c.ape, c.first, a.ratio, a.width);
    MAGNETAR_CUDA_CHECK(cudaGetLastError());
  }
  const int64_t end = c.first + c.n_tokens;
  const int64_t emitted = end / s.ratio - c.first / s.ratio;
  const unsigned width_blocks = static_cast<unsigned>((a.width + kThreads - 1) / kThreads);
  const size_t fast_shared =
      static_cast<size_t>(3 * s.head_width + 2 * a.rope_pairs) * sizeof(float);
  if (!reference && c.n_tokens == 1 && emitted == 1) {
    compressor_step_fast_kernel<<<1 + width_blocks, kThreads, fast_shared, stream>>>(
        a, s.kv.data(), s.score.data());
    MAGNETAR_CUDA_CHECK(cudaGetLastError());
    return;
  }
  if (emitted > 0) {
    const unsigned grid = static_cast<unsigned>(emitted);
    if (reference) {
      const size_t shared = static_cast<size_t>(s.head_width) * sizeof(float);
      compressor_emit_kernel<<<grid, kThreads, shared, stream>>>(a);
    } else {
      compressor_emit_fast_kernel<<<grid, kThreads, fast_shared, stream>>>(a);
    }
    MAGNETAR_CUDA_CHECK(cudaGetLastError());
  }
  // A buffer slot is rewritten every buffers · ratio positions: only the chunk's last tokens can
  // be the final writers.
  const int64_t period = static_cast<int64_t>(s.buffers()) * s.ratio;
  const int64_t first_stored = std::max(c.first, end - period);
  if (end > first_stored) {
    const unsigned stored = static_cast<unsigned>(end - first_stored);
    if (reference) {
      compressor_store_kernel<<<stored, kThreads, 0, stream>>>(a, first_stored, s.kv.data(),
                                                               s.score.data());
    } else {
      const dim3 grid(stored, width_blocks);
      compressor_store_fast_kernel<<<grid, kThreads, 0, stream>>>(a, first_stored, s.kv.data(),
                                                                  s.score.data());
    }
    MAGNETAR_CUDA_CHECK(cudaGetLastError());
  }
}

}  // namespace magnetar::gpu
