// The tiny synthetic model and random prompts, as the engine-level tests use them.
#pragma once

#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "scratch_dir.h"
#include "synth/synth_writer.h"

namespace magnetar::testing {

// Writes (once per test process) `magnetar synth --preset tiny --types <types> --seed <seed>`
// into this process's scratch directory and returns its path.
inline std::filesystem::path tiny_model(const std::string& types, uint64_t seed, bool with_mtp) {
  std::filesystem::path path =
      scratch_dir("tiny_model") /
      ("tiny-" + types + "-" + std::to_string(seed) + (with_mtp ? "-mtp" : "") + ".gguf");
  if (!std::filesystem::exists(path)) {
    synth::SynthOptions o;
    o.preset = *synth::preset_by_name("tiny");
    o.preset.mix = *synth::quant_mix_from_name(types);
    o.preset.with_mtp = with_mtp;
    o.seed = seed;
    synth::TokenizerVocab vocab = synth::load_deepseek_v4_vocab(synth::find_tokenizer_dir());
    synth::write_synthetic_model(o, synth::plan_synthetic_model(o, vocab), path);
  }
  return path;
}

// `n` token ids in [0, 128000) (ordinary BPE tokens) from a seeded generator.
inline std::vector<int32_t> random_tokens(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int32_t& x : t) x = static_cast<int32_t>(rng() % 128000);
  return t;
}

}  // namespace magnetar::testing
