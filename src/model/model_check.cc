#include "model/model_check.h"

#include <unordered_map>

#include "model/special_tokens.h"

namespace magnetar::model {
namespace {

using gguf::GgufType;
using gguf::GgufValue;

void check_tokenizer(const gguf::GgufFile& file, ModelCheck& check) {
  const gguf::GgufMetadata& m = file.metadata();
  TokenizerSummary& s = check.tokenizer;
  auto& issues = check.tokenizer_issues;
  s.model = m.get_string("tokenizer.ggml.model").value_or("");
  s.pre = m.get_string("tokenizer.ggml.pre").value_or("");
  auto string_array = [&](const char* key) -> const GgufValue* {
    const GgufValue* v = m.find(key);
    if (v == nullptr) {
      issues.push_back(std::string("missing ") + key);
      return nullptr;
    }
    if (!v->is_array() || v->element_type() != GgufType::kString) {
      issues.push_back(std::string(key) + " must be an array of strings");
      return nullptr;
    }
    return v;
  };
  const GgufValue* tokens = string_array("tokenizer.ggml.tokens");
  const GgufValue* merges = string_array("tokenizer.ggml.merges");
  if (merges) s.n_merges = merges->array_size();
  if (const GgufValue* types = m.find("tokenizer.ggml.token_type")) {
    s.n_token_types = types->array_size();
  }
  if (tokens == nullptr) return;
  const std::vector<std::string>& strings = tokens->array()->strings;
  s.n_tokens = strings.size();
  if (check.config && s.n_tokens != check.config->n_vocab) {
    issues.push_back("tokenizer has " + std::to_string(s.n_tokens) + " tokens, vocab_size is " +
                     std::to_string(check.config->n_vocab));
  }
  if (s.n_token_types != 0 && s.n_token_types != s.n_tokens) {
    issues.push_back("tokenizer.ggml.token_type has " + std::to_string(s.n_token_types) +
                     " entries for " + std::to_string(s.n_tokens) + " tokens");
  }
  std::unordered_map<std::string_view, int64_t> ids;
  for (size_t i = 0; i < strings.size(); ++i) ids.emplace(strings[i], static_cast<int64_t>(i));
  for (const SpecialTokenName& special : kRequiredSpecialTokens) {
    auto it = ids.find(special.text);
    int64_t id = it == ids.end() ? -1 : it->second;
    s.specials.push_back({std::string(special.role), std::string(special.text), id});
    if (id < 0) {
      issues.push_back("special token " + std::string(special.role) + " (" +
                       std::string(special.text) + ") missing");
    }
  }
}

}  // namespace

ModelCheck check_model_file(const gguf::GgufFile& file) {
  ModelCheck check;
  const GgufValue* synthetic = file.metadata().find("magnetar.synthetic");
  check.synthetic = synthetic && synthetic->as_bool().value_or(false);
  try {
    check.config = ModelConfig::from_metadata(file.metadata());
  } catch (const ConfigError& e) {
    check.config_error = e.what();
  }
  if (check.config) check.layout = check_layout(*check.config, file.tensors());
  check_tokenizer(file, check);
  return check;
}

}  // namespace magnetar::model
