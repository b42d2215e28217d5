// The CUDA backend behind the backend interface (backend/backend.h): the forward pass of
// cuda_model.h, with sequence states in device memory (cuda_sequence_state.h) that export to and
// import from the portable cpu::SequenceState exactly.
#pragma once

#include <memory>

#include "backend/backend.h"
#include "backend/cuda/cuda_model.h"
#include "gguf/gguf_reader.h"

namespace magnetar::gpu {

class CudaBackend final : public backend::Backend {
 public:
  // Uploads the weights of `file`, which must outlive the backend (see CudaModel).
  CudaBackend(const gguf::GgufFile& file, const CudaOptions& options) : model_(file, options) {}
  // Random weights for `config`, made in device memory (synthetic_weights.h).
  CudaBackend(const model::ModelConfig& config, const SyntheticSpec& spec,
              const CudaOptions& options)
      : model_(config, spec, options) {}

  std::string_view name() const override { return "cuda"; }
  const model::ModelConfig& config() const override { return model_.config(); }
  std::unique_ptr<backend::Sequence> new_sequence() override;
  bool has_mtp() const override { return model_.layout()->has_mtp; }
  std::unique_ptr<backend::Sequence> new_mtp_sequence() override;
  // Also throws std::invalid_argument for states the CUDA backend cannot hold (longer than the
  // context, rows off the official FP8/FP4 grid): DeviceSequenceState::from_cpu.
  std::unique_ptr<backend::Sequence> import_state(const cpu::SequenceState& state) override;
  // 2048: a tensor-core prefill call pays a fixed cost (every routed expert decoded to f16) that
  // a longer chunk spreads over more tokens (one Flash layer's products: 725 tok/s at 512, 2,561
  // at 2048, H200), and 2048 tokens of scratch fit the reserve beside the weights on an H100.
  int64_t preferred_prefill_chunk() const override { return 2048; }
  // Also throws std::invalid_argument when an item would pass the context, before any item runs.
  void forward(std::span<backend::ForwardItem> items) override;

  int64_t context() const { return model_.layout()->context; }
  const CudaModel& model() const { return model_; }

 private:
  CudaModel model_;
};

// The CUDA backend for `file`.
std::unique_ptr<backend::Backend> make_cuda_backend(const gguf::GgufFile& file,
                                                    const CudaOptions& options);

// The CUDA backend for a model of `config` with random weights made on the GPU.
std::unique_ptr<backend::Backend> make_synthetic_cuda_backend(const model::ModelConfig& config,
                                                              const SyntheticSpec& spec,
                                                              const CudaOptions& options);

// True when a CUDA device is present and this build's kernels can run on it.
bool cuda_backend_usable();

}  // namespace magnetar::gpu
