// The interface every compute backend implements (the CPU reference, CUDA), so that the engine and
// its front ends do not care where the model runs.
//
// A backend owns the weights it computes with and the state of the sequences it advances. A
// sequence's state lives wherever the backend wants it (host memory for the CPU, device memory for
// CUDA); the engine only clones it (snapshots), and moves it in and out of the *portable form*,
// the CPU reference's cpu::SequenceState, which is what session files store. Every backend must
// round-trip that form exactly, so a session saved on one backend resumes on another.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "backend/cpu/sequence_state.h"
#include "model/model_config.h"

namespace magnetar::backend {

// One sequence's model state, held by the backend that created it.
class Sequence {
 public:
  virtual ~Sequence() = default;
  // Tokens processed so far: the position of the next token.
  virtual int64_t position() const = 0;
  // A deep copy: a snapshot that later steps of this sequence do not change.
  virtual std::unique_ptr<Sequence> clone() const = 0;
  // The state in the portable form.
  virtual cpu::SequenceState export_state() const = 0;
  // Bytes of memory the state holds (host arrays on the CPU, device allocations on CUDA): what
  // `magnetar bench` reports as kvcache_bytes.
  virtual size_t state_bytes() const = 0;
  // Allocates now the storage that holding `tokens` positions needs (storage that otherwise grows
  // with the sequence), so that state_bytes() then reports the memory of a sequence that long.
  // False where the backend's storage does not grow in steps it can take ahead (the CPU's).
  virtual bool reserve(int64_t /*tokens*/) { return false; }
};

// One sequence advanced by a forward call.
struct ForwardItem {
  Sequence* sequence = nullptr;     // created by the backend doing the call
  std::span<const int32_t> tokens;  // at positions sequence->position(), +1, ...
  bool all_logits = false;          // logits of every token; otherwise of the last only
  // Also the MTP block's draft logits (model.md §9); the sequence must come from
  // new_mtp_sequence().
  bool mtp_logits = false;

  // Outputs.
  std::vector<float> logits;  // [n][vocab], n = tokens.size() or 1
  // With mtp_logits: MTP logits of positions mtp_first_position.. (one row per position): the
  // positions completed in this call, whose next token is now known, then the draft of the last
  // token (whose next token is taken as the argmax of its main logits). Rows for earlier
  // positions replace the drafts an earlier call returned for them.
  std::vector<float> mtp;
  int64_t mtp_first_position = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;

  // "cpu" or "cuda", for logs and benchmarks.
  virtual std::string_view name() const = 0;
  virtual const model::ModelConfig& config() const = 0;

  virtual std::unique_ptr<Sequence> new_sequence() = 0;
  // Whether the model has the MTP block (mtp.0.* tensors).
  virtual bool has_mtp() const = 0;
  // A fresh sequence that also keeps the MTP block's state, so that its forward items may ask
  // for draft logits. Throws std::invalid_argument when the model has no MTP block.
  virtual std::unique_ptr<Sequence> new_mtp_sequence() = 0;
  // A sequence holding `state`. Throws std::invalid_argument when the state's shapes do not fit
  // this model (cpu::check_sequence_state).
  virtual std::unique_ptr<Sequence> import_state(const cpu::SequenceState& state) = 0;
  // Prompt tokens per sequence and forward call that suit this backend when the caller does not
  // choose (EngineOptions::prefill_chunk = 0).
  virtual int64_t preferred_prefill_chunk() const { return 512; }

  // Advances every item by its tokens; items are independent sequences of any lengths and
  // positions. Results equal feeding each item's tokens one at a time. Throws
  // std::invalid_argument for an out-of-range token id, leaving the sequences unchanged. One call
  // at a time.
  virtual void forward(std::span<ForwardItem> items) = 0;
};

}  // namespace magnetar::backend
