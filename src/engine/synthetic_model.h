// The file-less description of a model whose random weights are made on the GPU
// (`--synthetic PRESET`, backend/cuda/synthetic_weights.h).
//
// Such a model still needs what a file's header gives: hyperparameters, the tokenizer, and labels
// saying its weights are random. synthetic_model_header() builds exactly the header `magnetar
// synth` would write for the preset (metadata from synth::plan_synthetic_model, the real DeepSeek
// V4 tokenizer from synth::find_tokenizer_dir()) as an in-memory GGUF image with no tensors, so the
// engine reads config, tokenizer and identity through its usual path. The image depends only on the
// preset, the types and the seed, and so does the identity (its SHA-256) that session files are
// checked against.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "synth/synth_preset.h"

namespace magnetar::engine {

// The header of a synthetic model: `preset` is "flash", "pro" or "tiny" (model/model_presets.h),
// `mix` the weight types. Throws std::invalid_argument for an unknown preset and
// std::runtime_error when the tokenizer files cannot be read.
std::vector<uint8_t> synthetic_model_header(const std::string& preset, synth::QuantMix mix,
                                            uint64_t seed);

}  // namespace magnetar::engine
