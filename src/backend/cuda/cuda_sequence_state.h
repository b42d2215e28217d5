// Everything the model remembers about one sequence, in device memory: the GPU form of
// cpu::SequenceState (model.md §10), stored compactly.
//
// Per layer: the window ring of the last `sliding_window` KV rows; for compressed layers the
// compressor's partial block and the compressed rows emitted so far; for ratio-4 layers the same
// for the indexer. KV and indexer rows use the compact formats of row_codec.h (FP8 / FP4 codes with
// one exponent per block under the official numerics), which hold exactly the CPU's values.
// Compressor blocks are float32 like the CPU's. The ratio-4 compressor keeps two block buffers and
// writes block b into buffer b % 2: that is the CPU's "current" / "previous" pair without its swap,
// so the current block of position p is buffer (p / 4) % 2 and the previous one the other.
//
// A sequence created for the MTP block (model.md §9) also keeps that block's window ring and the
// final HC state of its last position, which waits for the next token (cpu::SequenceState's
// mtp_pending_hidden), as float32 in device memory.
//
// Compressed-row storage grows with the sequence (doubling) up to the context the backend was
// given, so a sequence holds only what its tokens need. Event counters and the position are kept
// on the host: they follow from the positions processed.
//
// from_cpu / to_cpu convert to and from the portable form exactly: a state imported and exported
// again is bit-identical, so session files move between backends.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "backend/cpu/sequence_state.h"
#include "backend/cuda/device_array.h"
#include "backend/cuda/row_codec.h"
#include "model/model_config.h"

namespace magnetar::gpu {

// The shapes of a sequence's state for one model and backend.
struct StateLayout {
  model::ModelConfig config;
  RowCodec kv;           // attention KV rows (window and compressed)
  RowCodec indexer;      // indexer key rows
  int64_t context = 0;   // the most tokens a sequence may hold
  bool has_mtp = false;  // the model has the MTP block
};

struct DeviceCompressorState {
  uint32_t ratio = 0;
  uint32_t width = 0;            // projected width (2c for ratio 4)
  uint32_t head_width = 0;       // c
  DeviceArray<float> kv, score;  // [buffers][ratio][width]
  DeviceArray<uint8_t> rows;     // [row_capacity][codec row bytes]
  int64_t row_capacity = 0;

  int buffers() const { return ratio == 4 ? 2 : 1; }
  size_t block_floats() const { return static_cast<size_t>(ratio) * width; }
};

struct DeviceLayerState {
  DeviceArray<uint8_t> window;  // [sliding_window][kv row bytes]; position p at slot p % window
  std::optional<DeviceCompressorState> compressor;  // ratio != 0
  std::optional<DeviceCompressorState> indexer;     // ratio == 4
};

class DeviceSequenceState {
 public:
  // A fresh sequence (position 0); with `mtp` (the layout must have it) it keeps MTP state.
  DeviceSequenceState(std::shared_ptr<const StateLayout> layout, bool mtp);

  // The device copy of `state`. Throws std::invalid_argument when its shapes do not fit the model
  // (cpu::check_sequence_state), when it holds MTP state and the model has no MTP block, when it
  // is longer than the context, or when a row is not on the grid of the compact format (a state
  // computed with plain numerics given to a backend with official numerics).
  static DeviceSequenceState from_cpu(std::shared_ptr<const StateLayout> layout,
                                      const cpu::SequenceState& state);
  cpu::SequenceState to_cpu() const;
  DeviceSequenceState clone() const;

  const StateLayout& layout() const { return *layout_; }
  int64_t position() const { return position_; }
  DeviceLayerState& layer(size_t l) { return layers_[l]; }
  const DeviceLayerState& layer(size_t l) const { return layers_[l]; }

  bool has_mtp() const { return mtp_.has_value(); }
  DeviceLayerState& mtp_layer() { return *mtp_; }
  const DeviceLayerState& mtp_layer() const { return *mtp_; }
  // The MTP block's pending final state ([hc][D] floats), valid when has_mtp_pending().
  float* mtp_pending() { return mtp_pending_.data(); }
  bool has_mtp_pending() const { return mtp_pending_set_; }
  void set_mtp_pending() { mtp_pending_set_ = true; }

  // Makes room for the compressed rows of every position before `end`. Keeps the rows.
  void reserve(int64_t end);
  // Records that positions [position, position + n) were processed: the position and counters.
  void advance(int64_t n);

 private:
  DeviceSequenceState() = default;

  std::shared_ptr<const StateLayout> layout_;
  int64_t position_ = 0;
  std::vector<DeviceLayerState> layers_;
  std::optional<DeviceLayerState> mtp_;
  DeviceArray<float> mtp_pending_;  // [hc][D] when mtp_
  bool mtp_pending_set_ = false;
  cpu::ForwardCounters counters_;
};

}  // namespace magnetar::gpu
