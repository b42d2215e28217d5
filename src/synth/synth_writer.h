// Writing a synthetic DeepSeek V4 model: metadata, tokenizer and random weights in ds4's layout.
//
// plan_synthetic_model() decides everything that goes into the file (metadata records, tensor
// names, shapes and types); write_synthetic_model() fills the tensors on many threads. The two are
// separate so that `synth --dry-run` can print the exact inventory and size without writing.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "gguf/gguf_value.h"
#include "gguf/gguf_writer.h"
#include "model/tensor_layout.h"
#include "synth/synth_preset.h"
#include "synth/tokenizer_vocab.h"

namespace magnetar::synth {

struct SynthOptions {
  SynthPreset preset;
  uint64_t seed = 42;
  unsigned threads = 0;  // 0: one per hardware thread
};

struct SynthPlan {
  gguf::GgufMetadata metadata;
  std::vector<model::ExpectedTensor> tensors;
  std::vector<gguf::TensorSpec> specs;  // same order, with storage types

  uint64_t tensor_bytes() const;  // Σ tensor sizes, without padding
};

// Validates the configuration (throws model::ConfigError) and lays the model out. The vocabulary
// must have config.n_vocab entries.
SynthPlan plan_synthetic_model(const SynthOptions& options, const TokenizerVocab& vocab);

struct SynthResult {
  uint64_t file_bytes = 0;
  uint64_t tensor_bytes = 0;
  double seconds = 0;
  unsigned threads = 0;
};

// Called about twice a second from the calling thread with bytes written so far and the total.
using ProgressFn = std::function<void(uint64_t done, uint64_t total)>;

// Writes the planned model to `path` (atomically: see GgufWriter). Throws on any failure, leaving
// no file behind.
SynthResult write_synthetic_model(const SynthOptions& options, const SynthPlan& plan,
                                  const std::filesystem::path& path,
                                  const ProgressFn& progress = nullptr);

}  // namespace magnetar::synth
