// The indexer's choice of compressed rows on the GPU (model.md §6.5), the twin of the CPU's
// indexer_select: for each query, all visible rows when there are at most top_k, else the top_k
// highest scores Σ_h relu(q_h · k) · w_h / sqrt(dim · heads), ties to the lower row index, in the
// CPU's order (score descending). Scores are computed with the CPU's summation order by either
// kernel: the fast one (reference_order() false, up to 64 heads) only decodes each row once for
// all heads. The selection ranks every row against every other (O(n²) per query, the reference),
// or, on the fast path past 256 rows, runs a radix select and a bitonic sort of the kept rows
// (O(n) per query). Every step is exact, so the choice is the same bits either way. No device
// code here.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "backend/cuda/row_codec.h"

namespace magnetar::gpu {

struct IndexerQuery {
  const float* q = nullptr;        // [n_tokens][heads][dim], RoPE'd, Hadamard'd, FP4-rounded
  const float* weights = nullptr;  // [n_tokens][heads] (weights_proj outputs)
  const uint8_t* rows = nullptr;   // the sequence's indexer rows
  RowCodec codec;
  int heads = 0;
  int dim = 0;
  int top_k = 0;
  float weight_scale = 0;  // 1 / sqrt(dim · heads), as the CPU computes it
  int64_t first = 0;       // position of the first query
  int64_t n_tokens = 0;
  float* scores = nullptr;  // scratch [n_tokens][max_rows]
  int64_t max_rows = 0;     // ≥ (first + n_tokens) / 4
};

// Writes selected[t · top_k + i] for i < count[t]: the chosen row indices of query t.
void indexer_select_cuda(const IndexerQuery& query, int32_t* selected, int32_t* count,
                         cudaStream_t stream);

}  // namespace magnetar::gpu
