#include "synth/synth_preset.h"

#include "model/model_presets.h"

namespace magnetar::synth {

using model::WeightClass;
using quant::GgmlType;

std::optional<QuantMix> quant_mix_from_name(std::string_view name) {
  if (name == "q2") return QuantMix::kQ2;
  if (name == "q4") return QuantMix::kQ4;
  if (name == "f32") return QuantMix::kF32;
  return std::nullopt;
}

std::string_view quant_mix_name(QuantMix mix) {
  switch (mix) {
    case QuantMix::kQ2:
      return "q2";
    case QuantMix::kQ4:
      return "q4";
    case QuantMix::kF32:
      return "f32";
  }
  return "?";
}

std::optional<SynthPreset> preset_by_name(std::string_view name) {
  if (name == "tiny") {
    return SynthPreset{"tiny", model::tiny_config(), QuantMix::kQ2, true, Encoding::kExact};
  }
  if (name == "v4-flash-q2") {
    return SynthPreset{"v4-flash-q2", model::flash_config(), QuantMix::kQ2, false,
                       Encoding::kRandomCodes};
  }
  if (name == "v4-flash-q4") {
    return SynthPreset{"v4-flash-q4", model::flash_config(), QuantMix::kQ4, false,
                       Encoding::kRandomCodes};
  }
  if (name == "v4-pro-q2") {
    return SynthPreset{"v4-pro-q2", model::pro_config(), QuantMix::kQ2, false,
                       Encoding::kRandomCodes};
  }
  return std::nullopt;
}

std::string_view preset_names() { return "tiny, v4-flash-q2, v4-flash-q4, v4-pro-q2"; }

GgmlType storage_type(WeightClass cls, QuantMix mix, bool mtp) {
  if (cls == WeightClass::kVector) return GgmlType::kF32;
  if (cls == WeightClass::kTokenMap) return GgmlType::kI32;
  if (mix == QuantMix::kF32) return GgmlType::kF32;
  switch (cls) {
    case WeightClass::kPlain:
      return GgmlType::kF16;
    case WeightClass::kMtpPlain:
      return GgmlType::kF32;
    case WeightClass::kDense:
      return GgmlType::kQ8_0;
    case WeightClass::kExpertGateUp:
      return mix == QuantMix::kQ4 || mtp ? GgmlType::kQ4_K : GgmlType::kIQ2_XXS;
    case WeightClass::kExpertDown:
      return mix == QuantMix::kQ4 || mtp ? GgmlType::kQ4_K : GgmlType::kQ2_K;
    default:
      return GgmlType::kF32;
  }
}

}  // namespace magnetar::synth
