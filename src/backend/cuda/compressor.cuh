// The KV compressors on the GPU (model.md §6.4), the twin of the CPU's run_compressor and
// cpu::compressor_push: pooling of each completed block of `ratio` tokens into one row (a softmax
// over the block's scores per channel, ratio 4 overlapping the previous block), then RMSNorm, RoPE
// at the block's first position, and the finish (Hadamard for indexer rows) into the compact row
// format, which applies the FP8/FP4 rounding (row_codec.h).
//
// A chunk is processed in two launches: every block completed in the chunk is pooled in parallel,
// reading the tokens before the chunk from the state's block buffers and the chunk's own tokens
// from its projections; then the chunk's last tokens are stored into the block buffers. This gives
// exactly the CPU's token-by-token results and state. No device code here.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "backend/cuda/cuda_sequence_state.h"
#include "backend/cuda/row_codec.h"

namespace magnetar::gpu {

struct CompressorChunk {
  DeviceCompressorState* state = nullptr;
  RowCodec codec;                // of the emitted rows
  const float* kv = nullptr;     // the chunk's projections [n_tokens][width]
  const float* score = nullptr;  // the chunk's scores with the position bias, [n_tokens][width]
  const float* norm = nullptr;   // [head width]
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

// score[t][i] += ape[(positions[t] % ratio) · width + i] for t < n_tokens (the compressor's
// position bias, added before the scores enter the state).
void add_position_bias_cuda(float* score, const float* ape, const int32_t* positions,
                            int64_t n_tokens, int ratio, int64_t width, cudaStream_t stream);

}  // namespace magnetar::gpu
