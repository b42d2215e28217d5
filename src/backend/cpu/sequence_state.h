// Everything the model remembers about one sequence between forward calls (model.md §10).
//
// Per layer: the window ring of the last `sliding_window` KV rows; for compressed layers the
// compressor's partial block and the compressed rows emitted so far; for ratio-4 layers the same
// for the indexer. The state is a plain value: copying it is a snapshot, assigning it back restores
// it (the engine builds snapshots and session files on this).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "model/model_config.h"

namespace magnetar::cpu {

// One compressor (attention: head width c = head_dim; indexer: c = indexer_head_dim).
struct CompressorState {
  uint32_t ratio = 0;
  uint32_t width = 0;       // projected width: 2c for ratio 4 (two overlapping windows), else c
  uint32_t head_width = 0;  // c: width of an emitted row
  // The current (partial) block: raw projections and scores (ape included), [ratio][width].
  std::vector<float> kv, score;
  // Ratio 4 only: the previous complete block, whose first-half columns join the next pooling.
  // Scores start at -inf so that block 0 pools only its own tokens.
  std::vector<float> prev_kv, prev_score;
  std::vector<float> rows;  // emitted rows, [n_rows][head_width]

  int64_t n_rows() const { return static_cast<int64_t>(rows.size() / head_width); }
  const float* row(int64_t i) const { return rows.data() + i * head_width; }
};

struct LayerState {
  std::vector<float> window;  // [sliding_window][head_dim]; row of position p at slot p % window
  std::optional<CompressorState> compressor;  // ratio != 0
  std::optional<CompressorState> indexer;     // ratio == 4
};

// Events the tests assert happened, not only that numbers matched.
struct ForwardCounters {
  int64_t window_wraps = 0;                // positions that overwrote a ring slot
  std::vector<int64_t> rows_emitted;       // compressed rows per layer
  int64_t indexer_partial_selections = 0;  // queries whose top-k dropped available rows
};

struct SequenceState {
  int64_t position = 0;  // tokens processed; the next token's position
  std::vector<LayerState> layers;
  std::optional<LayerState> mtp;  // the MTP block's window ring
  // The final HC state of the last position, waiting for the next token before the MTP block can
  // process that position (it needs the *next* token; model.md §9.2). Empty when none.
  std::vector<float> mtp_pending_hidden;
  ForwardCounters counters;
};

SequenceState make_sequence_state(const model::ModelConfig& config, bool with_mtp);

// Checks that a state (from a session file, or another backend) has the shapes `config` gives a
// sequence at its position: layers, ring and compressor sizes, compressed row counts. Throws
// std::invalid_argument naming the first mismatch, so a well-formed payload with wrong shapes can
// never index out of bounds.
void check_sequence_state(const model::ModelConfig& config, const SequenceState& state);

// Pushes one token's projections into a compressor (model.md §6.4). `score` already includes the
// position bias. When the token completes a block, writes the pooled (not yet normalized) row of
// head_width values to `pooled` and returns true.
bool compressor_push(CompressorState& state, int64_t position, const float* kv, const float* score,
                     float* pooled);

}  // namespace magnetar::cpu
