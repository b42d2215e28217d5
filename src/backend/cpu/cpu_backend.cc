#include "backend/cpu/cpu_backend.h"

#include <stdexcept>
#include <string>

namespace magnetar::cpu {
namespace {

size_t float_bytes(const std::vector<float>& v) { return v.size() * sizeof(float); }

size_t compressor_bytes(const std::optional<CompressorState>& c) {
  if (!c) return 0;
  return float_bytes(c->kv) + float_bytes(c->score) + float_bytes(c->prev_kv) +
         float_bytes(c->prev_score) + float_bytes(c->rows);
}

size_t layer_bytes(const LayerState& layer) {
  return float_bytes(layer.window) + compressor_bytes(layer.compressor) +
         compressor_bytes(layer.indexer);
}

// The float arrays of a state: window rings, compressor blocks and emitted rows, MTP ring.
size_t sequence_state_bytes(const SequenceState& state) {
  size_t n = float_bytes(state.mtp_pending_hidden);
  for (const LayerState& layer : state.layers) n += layer_bytes(layer);
  if (state.mtp) n += layer_bytes(*state.mtp);
  return n;
}

class CpuSequence final : public backend::Sequence {
 public:
  explicit CpuSequence(SequenceState state) : state(std::move(state)) {}
  int64_t position() const override { return state.position; }
  std::unique_ptr<backend::Sequence> clone() const override {
    return std::make_unique<CpuSequence>(state);
  }
  SequenceState export_state() const override { return state; }
  size_t state_bytes() const override { return sequence_state_bytes(state); }

  SequenceState state;
};

}  // namespace

std::unique_ptr<backend::Sequence> CpuBackend::new_sequence() {
  return std::make_unique<CpuSequence>(model_.new_sequence(/*with_mtp=*/false));
}

std::unique_ptr<backend::Sequence> CpuBackend::new_mtp_sequence() {
  if (!model_.has_mtp()) throw std::invalid_argument("the model has no MTP block (mtp.0.*)");
  return std::make_unique<CpuSequence>(model_.new_sequence(/*with_mtp=*/true));
}

std::unique_ptr<backend::Sequence> CpuBackend::import_state(const SequenceState& state) {
  check_sequence_state(model_.config(), state);
  return std::make_unique<CpuSequence>(state);
}

void CpuBackend::forward(std::span<backend::ForwardItem> items) {
  // Every item is checked before any runs, so a bad request leaves all sequences as they were.
  const int64_t vocab = model_.config().n_vocab;
  for (const backend::ForwardItem& item : items) {
    auto* sequence = dynamic_cast<CpuSequence*>(item.sequence);
    if (sequence == nullptr) throw std::invalid_argument("forward: a sequence of another backend");
    if (item.mtp_logits && !sequence->state.mtp) {
      throw std::invalid_argument("forward: MTP logits asked of a sequence without MTP state");
    }
    if (item.tokens.empty()) throw std::invalid_argument("forward: an item has no tokens");
    for (int32_t t : item.tokens) {
      if (t < 0 || t >= vocab) {
        throw std::invalid_argument("token id " + std::to_string(t) +
                                    " is outside the vocabulary (" + std::to_string(vocab) +
                                    " tokens)");
      }
    }
  }
  std::vector<ForwardItem> cpu_items(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    cpu_items[i].state = &static_cast<CpuSequence*>(items[i].sequence)->state;
    cpu_items[i].tokens = items[i].tokens;
    cpu_items[i].all_logits = items[i].all_logits;
    cpu_items[i].mtp_logits = items[i].mtp_logits;
  }
  model_.forward(cpu_items);
  for (size_t i = 0; i < items.size(); ++i) {
    items[i].logits = std::move(cpu_items[i].logits);
    items[i].mtp = std::move(cpu_items[i].mtp);
    items[i].mtp_first_position = cpu_items[i].mtp_first_position;
  }
}

}  // namespace magnetar::cpu
