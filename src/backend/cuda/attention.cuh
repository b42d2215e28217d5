// The attention sublayer of one block on the GPU (model.md §6), the twin of cpu::attention_chunk,
// for a batch of sequences at once: the query path, the shared KV row, the compressors, the
// indexer's top-k, sparse attention with sinks, inverse RoPE and the grouped output projection.
//
// The per-token work (projections, norms, RoPE, FP8/FP4 rounding) runs over every token of the
// batch in one launch each; the work that reads a sequence's state (compressors, indexer,
// attention, the window update) runs item by item. A chunk gives exactly the results of feeding
// its tokens one at a time, as on the CPU (§6.9). No device code here.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <span>

#include "backend/cuda/cuda_sequence_state.h"
#include "backend/cuda/device_array.h"
#include "backend/cuda/device_weights.h"
#include "backend/cuda/row_codec.h"

namespace magnetar::gpu {

// One sequence's share of the batch.
struct AttentionItem {
  DeviceLayerState* state = nullptr;  // this layer's state of the sequence
  int64_t first = 0;                  // position of its first token
  int64_t n_tokens = 0;
  int64_t offset = 0;  // index of its first token in the batch
};

// Scratch of the attention sublayer.
struct AttentionBuffers {
  DeviceArray<float> xq;                     // [N][D]
  DeviceArray<float> qr, qr_quant;           // [N][q_lora]
  DeviceArray<float> q;                      // [N][H][head_dim]
  DeviceArray<float> kv;                     // [N][head_dim]
  DeviceArray<uint8_t> kv_rows;              // [N][kv row bytes]
  DeviceArray<float> comp_kv, comp_score;    // [N][compressor width]
  DeviceArray<float> index_q;                // [N][indexer heads][indexer dim]
  DeviceArray<float> index_weights;          // [N][indexer heads]
  DeviceArray<float> index_kv, index_score;  // [N][2 · indexer dim]
  DeviceArray<float> index_scores;           // [item tokens][visible rows]
  DeviceArray<int32_t> selected;             // [N][top_k]
  DeviceArray<int32_t> selected_count;       // [N]
  DeviceArray<float> probs;                  // [item tokens][H][rows]
  DeviceArray<float> o;                      // [N][H][head_dim]
  DeviceArray<float> low;                    // [N][groups · o_lora_rank]
  int64_t max_rows = 0;        // attention rows per query the probs scratch is sized for
  int64_t max_index_rows = 0;  // indexer rows per query the scores scratch is sized for

  // Sizes the buffers for n_tokens tokens in all, at most item_tokens of one sequence, whose
  // queries see at most max_rows attention rows and max_index_rows indexer rows.
  void reserve(const StateLayout& layout, int64_t n_tokens, int64_t item_tokens, int64_t max_rows,
               int64_t max_index_rows);
};

struct AttentionContext {
  const StateLayout& layout;
  const DeviceBlock& weights;
  const float* rope_freqs = nullptr;  // the block's RoPE table (device)
  uint32_t ratio = 0;
  bool official = true;  // FP8/FP4 simulations of the official model (model.md §3.3–3.5)
  // False for an MTP draft evaluation: the window rings stay as they were (the CPU's commit).
  // Only window-only blocks (ratio 0) may be run without committing.
  bool commit = true;
};

// x: normalized inputs [N][D] of the batch at `positions` (device, [N]); out: [N][D]. Updates each
// item's window ring and compressor states; their compressed-row storage must already hold the
// rows of the chunk (DeviceSequenceState::reserve).
void attention_chunk_cuda(const AttentionContext& ctx, std::span<const AttentionItem> items,
                          const int32_t* positions, const float* x, int64_t n_tokens, float* out,
                          AttentionBuffers& buffers, cudaStream_t stream);

// The per-token rows of the sublayer for n_tokens tokens at positions[t] (device), in place:
// each query head ([T][heads][head_dim]) gets the unweighted RMSNorm and RoPE of its last rope_dims
// dims (§6.1); each token's KV row (kv, [T][head_dim], left unspecified) RMSNorm with kv_norm and
// RoPE, stored in `codec`'s format into kv_rows (§6.2); and, when index_q is not null, each indexer
// head ([T][index_heads][index_dim]) RoPE, the Hadamard transform (index_dim a power of two) and,
// when official, FP4 rounding in blocks of 32 (§6.5). Exposed for the kernel tests.
//
// reference_order() (linear.cuh) picks the reference kernels: one 128-thread block per row in the
// CPU's order, three launches. Otherwise one launch gives the same bits with every load in flight
// at once, the RoPE table computed one transcendental per thread during those loads, and the KV
// row encoded one warp per block (an indexer head of more than 128 dims takes its reference kernel
// in a launch of its own).
struct TokenRows {
  const int32_t* positions = nullptr;
  int64_t n_tokens = 0;
  const float* rope_freqs = nullptr;
  int rope_dims = 0;
  float eps = 0;
  float* q = nullptr;
  int heads = 0;
  int head_dim = 0;  // of the query heads and the KV row
  float* kv = nullptr;
  const float* kv_norm = nullptr;
  RowCodec codec;
  uint8_t* kv_rows = nullptr;
  float* index_q = nullptr;  // null: no indexer queries
  int index_heads = 0;
  int index_dim = 0;
  bool official = true;  // FP4 rounding of the indexer queries
};
void token_rows_cuda(const TokenRows& rows, cudaStream_t stream);

}  // namespace magnetar::gpu
