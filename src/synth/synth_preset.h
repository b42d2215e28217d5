// What `magnetar synth` writes: a model shape plus a quantization plan.
//
// The plan reproduces ds4's published type mixes (gguf.md §3.5): dense attention and shared
// experts Q8_0, embeddings and small matrices F16, norms F32, routed experts IQ2_XXS gate/up +
// Q2_K down ("q2") or Q4_K everywhere ("q4"). "f32" stores every matrix as F32: the numerical
// oracle twin of a quantized model (same weights before quantization, same seed).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "model/model_config.h"
#include "model/tensor_layout.h"
#include "quant/ggml_type.h"

namespace magnetar::synth {

enum class QuantMix { kQ2, kQ4, kF32 };

std::optional<QuantMix> quant_mix_from_name(std::string_view name);  // "q2", "q4", "f32"
std::string_view quant_mix_name(QuantMix mix);

// How tensor bytes are produced.
enum class Encoding {
  // Gaussian float weights encoded with the real quantizers: a quantized file and its f32 twin
  // hold the same weights up to quantization error. Slow for the K-quant and IQ2 encoders.
  kExact,
  // Random codes written straight into quant blocks, with block scales chosen so the decoded
  // weights have the intended spread. Every byte pattern of these formats is a valid block, so
  // the file is a real model file; it is what makes 80 GB files take a minute.
  kRandomCodes,
};

struct SynthPreset {
  std::string name;
  model::ModelConfig config;
  QuantMix mix = QuantMix::kQ2;
  bool with_mtp = false;  // write the MTP block (mtp.0.*) into the same file
  Encoding encoding = Encoding::kExact;
};

// "tiny" (q2 mix, MTP, exact), "v4-flash-q2", "v4-flash-q4", "v4-pro-q2" (random codes, no MTP:
// ds4 ships MTP as a separate file, so the main files hold exactly ds4's 1328 tensors).
std::optional<SynthPreset> preset_by_name(std::string_view name);
std::string_view preset_names();  // for help texts

// The storage type of a tensor of class `cls` under `mix`. ds4's MTP file stores its routed
// experts as Q4_K whatever the main model's mix.
quant::GgmlType storage_type(model::WeightClass cls, QuantMix mix, bool mtp);

}  // namespace magnetar::synth
