#include "backend/cpu/cpu_backend.h"

#include <stdexcept>
#include <string>

namespace magnetar::cpu {
namespace {

class CpuSequence final : public backend::Sequence {
 public:
  explicit CpuSequence(SequenceState state) : state(std::move(state)) {}
  int64_t position() const override { return state.position; }
  std::unique_ptr<backend::Sequence> clone() const override {
    return std::make_unique<CpuSequence>(state);
  }
  SequenceState export_state() const override { return state; }

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
