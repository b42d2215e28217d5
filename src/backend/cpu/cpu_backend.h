// The CPU reference model behind the backend interface (backend/backend.h): its sequences are
// cpu::SequenceState values in host memory, so the portable form is the state itself.
#pragma once

#include <memory>

#include "backend/backend.h"
#include "backend/cpu/cpu_model.h"

namespace magnetar::cpu {

class CpuBackend final : public backend::Backend {
 public:
  // Binds the weights of `file`, which must outlive the backend.
  CpuBackend(const gguf::GgufFile& file, CpuOptions options) : model_(file, options) {}

  std::string_view name() const override { return "cpu"; }
  const model::ModelConfig& config() const override { return model_.config(); }
  std::unique_ptr<backend::Sequence> new_sequence() override;
  bool has_mtp() const override { return model_.has_mtp(); }
  std::unique_ptr<backend::Sequence> new_mtp_sequence() override;
  std::unique_ptr<backend::Sequence> import_state(const SequenceState& state) override;
  void forward(std::span<backend::ForwardItem> items) override;

 private:
  CpuModel model_;
};

}  // namespace magnetar::cpu
