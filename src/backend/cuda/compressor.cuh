// The KV compressors on the GPU (model.md §6.4), the twin of the CPU's run_compressor and
// cpu::compressor_push: pooling of each completed block of `ratio` tokens into one row (a softmax
// over the block's scores per channel, ratio 4 overlapping the previous block), then RMSNorm, RoPE
// at the block's first position, and the finish (Hadamard for indexer rows) into the compact row
// format, which applies the FP8/FP4 rounding (row_codec.h).
//
// A chunk is processed in two launches: every block completed in the chunk is pooled in parallel,
// reading the tokens before the chunk from the state's block buffers and the chunk's own tokens
// from its projections; then the chunk's last tokens are stored into the block buffers. This gives
// exactly the CPU's token-by-token results and state.
//
// reference_order() (linear.cuh) picks the reference kernels: the position bias added to the
// chunk's scores by a launch of its own, one thread per pooled value walking the block's tokens one
// load at a time, the RoPE and the row codes by one thread per pair and per block. Otherwise the
// fast kernels give the same bits: the bias added where the scores are read, the block's token
// loads issued together, the RoPE table computed during the pooling, the Hadamard transform in
// registers and the codes by a warp per block; a decode step that completes a block emits its row
// and stores its token in one launch. No device code here.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "backend/cuda/cuda_sequence_state.h"
#include "backend/cuda/row_codec.h"

namespace magnetar::gpu {

struct CompressorChunk {
  DeviceCompressorState* state = nullptr;
  RowCodec codec;             // of the emitted rows
  const float* kv = nullptr;  // the chunk's projections [n_tokens][width]
  // The chunk's scores [n_tokens][width] before the position bias; the reference kernels add the
  // bias in place (this is scratch), the fast ones as they read it.
  float* score = nullptr;
  const float* ape = nullptr;   // the position bias [ratio][width]: position p takes row p % ratio
  const float* norm = nullptr;  // [head width]
  const float* rope_freqs = nullptr;
  int rope_dims = 0;
  float eps = 0;
  bool hadamard = false;  // indexer rows
  int64_t first = 0;      // position of the chunk's first token
  int64_t n_tokens = 0;
};

// Pools and stores the rows of every block the chunk completes, then updates the block buffers.
// The state's row storage must already hold (first + n_tokens) / ratio rows.
void compressor_chunk_cuda(const CompressorChunk& chunk, cudaStream_t stream);

}  // namespace magnetar::gpu
