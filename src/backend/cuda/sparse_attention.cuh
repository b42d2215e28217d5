// Sparse attention with per-head sinks on the GPU (model.md §6.7), the twin of the attention loop
// of cpu attention_chunk: each query attends to the window rows of positions max(0, t−W+1)..t
// (from the ring before the chunk, from the chunk's own rows after) and then to its compressed
// rows (the indexer's choice in ratio-4 layers, every visible row otherwise); softmax with the
// head's sink; the weighted sum of the rows; inverse RoPE of the result.
//
// Two kernels compute it:
//   - With reference_order() (linear.cuh) every sum runs in the CPU's order (one thread per dot
//     product, one per output pair), for the bit-exact tests. It uses `probs`.
//   - Otherwise a fused kernel with an online softmax: a cluster of two 512-thread blocks per
//     (query, group of heads) decodes the query's rows once per 32-row tile into shared memory and
//     splits them over the warps of each head (32, or 2 with 16 heads), whose states are merged in
//     a fixed order. Below 32 queries per call a cluster takes one head (its result then depends
//     only on the query's rows, not on the batch); from 32 on (prefill) it takes 16 heads, which
//     share every decoded tile. Either way results stay within a few 1e-6 of the reference order
//     (sparse_attention.cu states the bound). It takes power-of-two head_dim from 32 to 512 with
//     FP8 or float32 rows; other shapes take the reference kernel.
// No device code here.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "backend/cuda/row_codec.h"

namespace magnetar::gpu {

struct SparseAttention {
  const float* q = nullptr;                 // [n_tokens][heads][head_dim], normalized and RoPE'd
  const uint8_t* chunk_rows = nullptr;      // [n_tokens][row bytes]: this chunk's KV rows
  const uint8_t* window = nullptr;          // the ring before this chunk
  const uint8_t* compressed = nullptr;      // the compressed rows (ratio != 0)
  const int32_t* selected = nullptr;        // ratio 4: [n_tokens][top_k] row indices
  const int32_t* selected_count = nullptr;  // ratio 4: [n_tokens]
  RowCodec codec;
  int ratio = 0;
  int top_k = 0;
  int64_t window_size = 0;
  int heads = 0;
  int head_dim = 0;
  int rope_dims = 0;
  const float* rope_freqs = nullptr;
  const float* sinks = nullptr;  // [heads]
  float scale = 0;               // 1 / sqrt(head_dim), as the CPU computes it
  int64_t first = 0;             // position of the first query
  int64_t n_tokens = 0;
  float* probs = nullptr;  // scratch [n_tokens][heads][max_rows] (reference kernel only)
  int64_t max_rows = 0;    // ≥ the rows of any query
  float* out = nullptr;    // [n_tokens][heads][head_dim]
};

void sparse_attention_cuda(const SparseAttention& a, cudaStream_t stream);

// Writes the chunk's KV rows into the window ring (slot p % W for position p), after its queries
// have read the ring: only the last W rows of the chunk land.
void commit_window_cuda(const uint8_t* chunk_rows, int64_t row_bytes, int64_t first,
                        int64_t n_tokens, int64_t window_size, uint8_t* window,
                        cudaStream_t stream);

}  // namespace magnetar::gpu
