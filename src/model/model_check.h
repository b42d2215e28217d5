// Is this GGUF a DeepSeek V4 model Magnetar can run? One call that gathers every answer.
//
// check_model_file() reads the hyperparameters, checks the tensor directory against the layout
// they imply and checks the tokenizer metadata, collecting every problem instead of stopping at
// the first, so that `magnetar inspect` can show the whole picture of a broken file.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "gguf/gguf_reader.h"
#include "model/model_config.h"
#include "model/tensor_layout.h"

namespace magnetar::model {

// The special tokens the V4 chat format needs, looked up by their exact strings.
struct SpecialToken {
  std::string role;  // "bos", "eos", "user", "assistant", "think", "think_end", "dsml"
  std::string text;  // the token string
  int64_t id = -1;   // -1 when absent
};

struct TokenizerSummary {
  std::string model;  // tokenizer.ggml.model
  std::string pre;    // tokenizer.ggml.pre
  uint64_t n_tokens = 0;
  uint64_t n_merges = 0;
  uint64_t n_token_types = 0;
  std::vector<SpecialToken> specials;
};

struct ModelCheck {
  std::optional<ModelConfig> config;  // absent when the hyperparameters are unusable
  std::string config_error;
  LayoutReport layout;
  TokenizerSummary tokenizer;
  std::vector<std::string> tokenizer_issues;
  bool synthetic = false;  // carries magnetar.synthetic = true (random weights)

  bool ok() const { return config && layout.ok() && tokenizer_issues.empty(); }
};

ModelCheck check_model_file(const gguf::GgufFile& file);

}  // namespace magnetar::model
