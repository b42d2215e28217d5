#include "engine/synthetic_model.h"

#include <stdexcept>

#include "gguf/gguf_writer.h"
#include "model/model_presets.h"
#include "synth/synth_writer.h"
#include "synth/tokenizer_vocab.h"

namespace magnetar::engine {

std::vector<uint8_t> synthetic_model_header(const std::string& preset, synth::QuantMix mix,
                                            uint64_t seed) {
  const std::optional<model::ModelConfig> config = model::config_by_name(preset);
  if (!config) {
    throw std::invalid_argument("unknown synthetic preset '" + preset +
                                "' (expected flash, pro or tiny)");
  }
  synth::SynthOptions options;
  options.preset =
      synth::SynthPreset{preset, *config, mix, /*with_mtp=*/false, synth::Encoding::kRandomCodes};
  options.seed = seed;
  const synth::TokenizerVocab vocab =
      synth::load_deepseek_v4_vocab(synth::find_tokenizer_dir(), config->n_vocab);
  const synth::SynthPlan plan = synth::plan_synthetic_model(options, vocab);
  return gguf::encode_header(plan.metadata, {}).bytes;
}

}  // namespace magnetar::engine
