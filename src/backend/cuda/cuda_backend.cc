#include "backend/cuda/cuda_backend.h"

#include <stdexcept>
#include <string>

#include "backend/cuda/cuda_device.h"

namespace magnetar::gpu {
namespace {

size_t compressor_bytes(const std::optional<DeviceCompressorState>& c) {
  return c ? c->kv.bytes() + c->score.bytes() + c->rows.bytes() : 0;
}

size_t layer_bytes(const DeviceLayerState& layer) {
  return layer.window.bytes() + compressor_bytes(layer.compressor) +
         compressor_bytes(layer.indexer);
}

// The device allocations of a state: window rings, compressor blocks, the compressed-row storage
// at its current (grown-as-needed) capacity, and the MTP block's ring and pending [hc][D] state.
size_t device_state_bytes(const DeviceSequenceState& state) {
  const model::ModelConfig& c = state.layout().config;
  size_t n = 0;
  for (uint32_t l = 0; l < c.n_layer; ++l) n += layer_bytes(state.layer(l));
  if (state.has_mtp()) {
    n += layer_bytes(state.mtp_layer()) + size_t{c.hc_count} * c.n_embd * sizeof(float);
  }
  return n;
}

class CudaSequence final : public backend::Sequence {
 public:
  CudaSequence(const CudaBackend* owner, DeviceSequenceState state)
      : owner(owner), state(std::move(state)) {}
  int64_t position() const override { return state.position(); }
  std::unique_ptr<backend::Sequence> clone() const override {
    return std::make_unique<CudaSequence>(owner, state.clone());
  }
  cpu::SequenceState export_state() const override { return state.to_cpu(); }
  size_t state_bytes() const override { return device_state_bytes(state); }
  bool reserve(int64_t tokens) override {
    state.reserve(tokens);
    return true;
  }

  const CudaBackend* owner;
  DeviceSequenceState state;
};

}  // namespace

std::unique_ptr<backend::Sequence> CudaBackend::new_sequence() {
  return std::make_unique<CudaSequence>(this, DeviceSequenceState(model_.layout(), false));
}

std::unique_ptr<backend::Sequence> CudaBackend::new_mtp_sequence() {
  return std::make_unique<CudaSequence>(this, DeviceSequenceState(model_.layout(), true));
}

std::unique_ptr<backend::Sequence> CudaBackend::import_state(const cpu::SequenceState& state) {
  return std::make_unique<CudaSequence>(this,
                                        DeviceSequenceState::from_cpu(model_.layout(), state));
}

void CudaBackend::forward(std::span<backend::ForwardItem> items) {
  // Every item is checked before any runs, so a bad request leaves all sequences as they were.
  const int64_t vocab = model_.config().n_vocab;
  std::vector<CudaModel::Item> cuda_items(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    const backend::ForwardItem& item = items[i];
    auto* sequence = dynamic_cast<CudaSequence*>(item.sequence);
    if (sequence == nullptr || sequence->owner != this) {
      throw std::invalid_argument("forward: a sequence of another backend");
    }
    if (item.tokens.empty()) throw std::invalid_argument("forward: an item has no tokens");
    for (int32_t t : item.tokens) {
      if (t < 0 || t >= vocab) {
        throw std::invalid_argument("token id " + std::to_string(t) +
                                    " is outside the vocabulary (" + std::to_string(vocab) +
                                    " tokens)");
      }
    }
    const int64_t end = sequence->position() + static_cast<int64_t>(item.tokens.size());
    if (end > context()) {
      throw std::invalid_argument("forward: " + std::to_string(end) +
                                  " tokens do not fit the context of " + std::to_string(context()) +
                                  " tokens");
    }
    if (item.mtp_logits && !sequence->state.has_mtp()) {
      throw std::invalid_argument("forward: MTP logits asked of a sequence without MTP state");
    }
    for (size_t j = 0; j < i; ++j) {
      if (cuda_items[j].state == &sequence->state) {
        throw std::invalid_argument("forward: a sequence appears twice in one call");
      }
    }
    cuda_items[i].state = &sequence->state;
    cuda_items[i].tokens = item.tokens;
    cuda_items[i].all_logits = item.all_logits;
    cuda_items[i].logits = &items[i].logits;
    cuda_items[i].mtp_logits = item.mtp_logits;
    cuda_items[i].mtp = &items[i].mtp;
    cuda_items[i].mtp_first_position = &items[i].mtp_first_position;
  }
  model_.forward(cuda_items);
}

std::unique_ptr<backend::Backend> make_cuda_backend(const gguf::GgufFile& file,
                                                    const CudaOptions& options) {
  return std::make_unique<CudaBackend>(file, options);
}

std::unique_ptr<backend::Backend> make_synthetic_cuda_backend(const model::ModelConfig& config,
                                                              const SyntheticSpec& spec,
                                                              const CudaOptions& options) {
  return std::make_unique<CudaBackend>(config, spec, options);
}

bool cuda_backend_usable() { return !cuda_devices().empty() && cuda_kernels_runnable(); }

}  // namespace magnetar::gpu
