// The V4 tokenizer for tests, built the way a model file carries it.
//
// The metadata comes from data/deepseek-v4-tokenizer through synth::load_deepseek_v4_vocab (what
// `magnetar synth` writes into model files) and goes through a real GGUF file, written with
// GgufWriter and opened with GgufFile, so that from_gguf is tested on exactly what it reads in
// production.
#pragma once

#include <filesystem>
#include <string>

#include "gguf/gguf_reader.h"
#include "gguf/gguf_value.h"
#include "gguf/gguf_writer.h"
#include "scratch_dir.h"
#include "synth/tokenizer_vocab.h"
#include "tokenizer/tokenizer.h"

namespace magnetar::tokenizer::testing {

// The tokenizer keys of a model file (gguf.md §2.3).
inline gguf::GgufMetadata v4_tokenizer_metadata() {
  static const synth::TokenizerVocab vocab = synth::load_deepseek_v4_vocab(
      std::filesystem::path(MAGNETAR_DATA_DIR) / "deepseek-v4-tokenizer");
  gguf::GgufMetadata m;
  synth::add_tokenizer_metadata(vocab, m);
  return m;
}

// Writes `metadata` as a GGUF file without tensors and opens it.
inline gguf::GgufFile write_and_open(const gguf::GgufMetadata& metadata, const std::string& name) {
  const std::filesystem::path path = magnetar::testing::scratch_dir("tokenizer") / name;
  gguf::GgufWriter writer(path, metadata, {});
  writer.commit();
  return gguf::GgufFile::open(path);
}

inline const Tokenizer& v4_tokenizer() {
  static const Tokenizer tokenizer =
      Tokenizer::from_gguf(write_and_open(v4_tokenizer_metadata(), "v4-tokenizer.gguf"));
  return tokenizer;
}

}  // namespace magnetar::tokenizer::testing
