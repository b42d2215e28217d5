#include "tokenizer/tokenizer.h"

#include <stdexcept>
#include <unordered_map>

#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe.h"
#include "tokenizer/byte_alphabet.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/utf8.h"

namespace magnetar::tokenizer {
namespace {

// ggml's llama_token_type values that mark added tokens (gguf.md §2.3): the GGUF converter gives
// every added token of tokenizer.json one of these, and no model.vocab entry either.
constexpr int64_t kTokenTypeNormal = 1;
constexpr int64_t kTokenTypeControl = 3;
constexpr int64_t kTokenTypeUserDefined = 4;

const gguf::GgufValue& require_string_array(const gguf::GgufMetadata& m, std::string_view key) {
  const gguf::GgufValue* v = m.find(key);
  if (v == nullptr) throw std::runtime_error(std::string(key) + " is missing");
  if (!v->is_array() || v->element_type() != gguf::GgufType::kString) {
    throw std::runtime_error(std::string(key) + " must be an array of strings");
  }
  return *v;
}

int32_t require_token_id(const gguf::GgufMetadata& m, std::string_view key, size_t n_tokens) {
  const gguf::GgufValue* v = m.find(key);
  if (v == nullptr) throw std::runtime_error(std::string(key) + " is missing");
  const std::optional<int64_t> id = v->as_i64();
  if (!id || *id < 0 || static_cast<uint64_t>(*id) >= n_tokens) {
    throw std::runtime_error(std::string(key) + " = " + v->to_display() +
                             " is not a token id below " + std::to_string(n_tokens));
  }
  return static_cast<int32_t>(*id);
}

}  // namespace

struct Tokenizer::Impl {
  std::vector<std::string> tokens;
  std::vector<std::string> bytes;  // what each id decodes to
  std::vector<bool> added;
  std::unordered_map<std::string_view, int32_t> ids;  // views into tokens
  std::optional<BpeMerger> bpe;
  AddedTokenMatcher added_matcher;
  PreTokenizer pre_tokenizer;
  int32_t bos = 0;
  int32_t eos = 0;

  // Encodes text that holds no added token to be honoured.
  void encode_plain(std::string_view text, std::vector<int32_t>& out) const;
};

void Tokenizer::Impl::encode_plain(std::string_view text, std::vector<int32_t>& out) const {
  std::vector<std::string_view> pieces;
  while (!text.empty()) {
    const size_t valid = valid_prefix_length(text);
    pieces.clear();
    pre_tokenizer.split(text.substr(0, valid), pieces);
    for (std::string_view piece : pieces) bpe->encode(piece, out);
    if (valid == text.size()) break;
    // Hugging Face only ever sees valid UTF-8; a byte that is not part of a valid character is
    // kept as its own byte token, so that arbitrary bytes still round-trip.
    out.push_back(bpe->byte_id(static_cast<uint8_t>(text[valid])));
    text.remove_prefix(valid + 1);
  }
}

Tokenizer Tokenizer::from_gguf(const gguf::GgufFile& file) {
  const gguf::GgufMetadata& m = file.metadata();
  auto impl = std::make_unique<Impl>();
  impl->tokens = require_string_array(m, "tokenizer.ggml.tokens").array()->strings;
  const std::vector<std::string>& merges =
      require_string_array(m, "tokenizer.ggml.merges").array()->strings;
  const size_t n = impl->tokens.size();
  if (n == 0 || n > static_cast<size_t>(INT32_MAX)) {
    throw std::runtime_error("tokenizer.ggml.tokens has " + std::to_string(n) +
                             " entries; expected 1 to 2^31-1");
  }
  const gguf::GgufValue* types = m.find("tokenizer.ggml.token_type");
  if (types == nullptr) throw std::runtime_error("tokenizer.ggml.token_type is missing");
  if (!types->is_array() || types->array_size() != n) {
    throw std::runtime_error("tokenizer.ggml.token_type must be an array of " + std::to_string(n) +
                             " integers, one per token");
  }
  impl->bos = require_token_id(m, "tokenizer.ggml.bos_token_id", n);
  impl->eos = require_token_id(m, "tokenizer.ggml.eos_token_id", n);

  impl->bytes.resize(n);
  impl->added.resize(n);
  impl->ids.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const auto id = static_cast<int32_t>(i);
    const std::string& text = impl->tokens[i];
    const std::optional<int64_t> type = types->element(i).as_i64();
    if (!type) throw std::runtime_error("tokenizer.ggml.token_type must hold integers");
    impl->ids.emplace(text, id);  // a repeated string keeps its first id
    impl->added[i] = *type == kTokenTypeControl || *type == kTokenTypeUserDefined;
    if (impl->added[i]) impl->added_matcher.add(text, id);
    // Normal tokens are byte-alphabet strings. Anything else (added tokens, unused padding
    // entries, or a normal token with characters outside the alphabet) decodes to its own text,
    // as Hugging Face's ByteLevel decoder does.
    std::optional<std::string> raw;
    if (*type == kTokenTypeNormal) raw = symbols_to_bytes(text);
    impl->bytes[i] = raw ? std::move(*raw) : text;
  }
  impl->bpe.emplace(merges, impl->ids);
  return Tokenizer(std::move(impl));
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool allow_special) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 1);
  if (!allow_special) {
    impl_->encode_plain(text, out);
    return out;
  }
  size_t pos = 0;
  while (std::optional<AddedTokenMatcher::Match> match = impl_->added_matcher.find(text, pos)) {
    impl_->encode_plain(text.substr(pos, match->begin - pos), out);
    out.push_back(match->id);
    pos = match->end;
  }
  impl_->encode_plain(text.substr(pos), out);
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids) const {
  std::string out;
  for (int32_t id : ids) out += token_bytes(id);
  return out;
}

const std::string& Tokenizer::token_bytes(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= impl_->bytes.size()) {
    throw std::out_of_range("token id " + std::to_string(id) + " is outside the vocabulary of " +
                            std::to_string(impl_->bytes.size()));
  }
  return impl_->bytes[id];
}

std::optional<int32_t> Tokenizer::token_id(std::string_view token_text) const {
  auto it = impl_->ids.find(token_text);
  if (it == impl_->ids.end()) return std::nullopt;
  return it->second;
}

const std::string& Tokenizer::token_text(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= impl_->tokens.size()) {
    throw std::out_of_range("token id " + std::to_string(id) + " is outside the vocabulary of " +
                            std::to_string(impl_->tokens.size()));
  }
  return impl_->tokens[id];
}

bool Tokenizer::is_added(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->added.size() && impl_->added[id];
}

int32_t Tokenizer::bos_id() const { return impl_->bos; }
int32_t Tokenizer::eos_id() const { return impl_->eos; }
int64_t Tokenizer::vocab_size() const { return static_cast<int64_t>(impl_->tokens.size()); }

}  // namespace magnetar::tokenizer
