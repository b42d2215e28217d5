// The DeepSeek V4 tokenizer: byte-level BPE with the official DeepSeek pre-tokenizer.
//
// Everything comes from the GGUF tokenizer metadata (gguf.md §2.3): tokenizer.ggml.tokens (id =
// index, GPT-2 byte-alphabet strings), tokenizer.ggml.merges ("left right", rank = index),
// tokenizer.ggml.token_type and the BOS/EOS ids. Encoding follows the Hugging Face `tokenizers`
// pipeline of DeepSeek's tokenizer.json exactly (official-encoding.md §5), not ds4's ASCII
// approximation of it:
//
//   1. With allow_special, every added token (token_type control or user-defined: <｜User｜>,
//      <think>, ｜DSML｜, …) is found in the whole text, leftmost-longest, before anything else;
//      each occurrence is its id, and the text between occurrences is encoded on its own, so no
//      merge spans a control token. Without allow_special the text is all plain text: this is
//      how client text is encoded, so a user cannot forge <｜Assistant｜> or </think>.
//   2. The identity normalizer, then the three Split regexes of tokenizer.json (digits in runs of
//      up to three; CJK/kana runs; the letter/punctuation/whitespace alternation), evaluated with
//      PCRE2 in UTF + Unicode-property mode, so \p{L}, \p{N}, \s mean what they mean in the
//      reference (e.g. fullwidth digits, NBSP and U+3000 count).
//   3. Each piece's bytes map to the GPT-2 byte alphabet and are merged by lowest merge rank
//      (ties: leftmost) until no ranked pair remains.
//
// A Tokenizer is immutable after construction and safe to share between threads.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gguf/gguf_reader.h"

namespace magnetar::tokenizer {

class Tokenizer {
 public:
  // From GGUF metadata (tokenizer.ggml.tokens / merges / token_type, bos/eos ids). Throws
  // std::runtime_error naming the key when the metadata is missing or inconsistent: an absent or
  // mistyped key, a merge that is not "left right" or names a string that is not a token, a
  // token_type array of another length, a BOS/EOS id outside the vocabulary, or a byte of the
  // GPT-2 alphabet with no token of its own (which would make some text unencodable).
  static Tokenizer from_gguf(const gguf::GgufFile& file);

  // Encodes text. With allow_special, exact strings of control/added tokens in the text become
  // their ids (official matching rules, official-encoding.md §5.2); without, the text is tokenized
  // as plain text (a user cannot forge <｜Assistant｜>). Never adds BOS or EOS. Bytes that are not
  // valid UTF-8 are encoded as their byte tokens, so any byte string round-trips through decode().
  std::vector<int32_t> encode(std::string_view text, bool allow_special = false) const;

  // The bytes the ids stand for (control tokens decode to their text). Throws std::out_of_range
  // for an id outside the vocabulary.
  std::string decode(std::span<const int32_t> ids) const;

  // The bytes one id stands for (what decode() appends for it).
  const std::string& token_bytes(int32_t id) const;

  // The id of an exact token string (an added token's text, or a vocabulary entry in its GPT-2
  // byte-alphabet form), or nullopt.
  std::optional<int32_t> token_id(std::string_view token_text) const;

  // The raw vocabulary string of an id (GPT-2 byte-alphabet form for normal tokens). Throws
  // std::out_of_range for an id outside the vocabulary.
  const std::string& token_text(int32_t id) const;

  // True for added tokens (control or user-defined), the ones allow_special can produce.
  bool is_added(int32_t id) const;

  int32_t bos_id() const;
  int32_t eos_id() const;
  int64_t vocab_size() const;

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Streaming decode: push ids one by one as they are generated; each call returns only complete
// UTF-8 characters (never half a character), holding back the bytes of a character whose
// remaining bytes are still to come. A byte sequence that can never become valid UTF-8 (a stray
// continuation byte, an overlong or surrogate form) is passed through raw as soon as it is known
// to be invalid, so that the concatenation of every push() and the final flush() is always
// byte-identical to Tokenizer::decode() of the same ids. flush() returns the held-back bytes of an
// unfinished character, raw, and resets the decoder.
class StreamDecoder {
 public:
  // `t` must outlive the decoder.
  explicit StreamDecoder(const Tokenizer& t);
  std::string push(int32_t id);
  std::string flush();

 private:
  const Tokenizer* tokenizer_;
  std::string pending_;  // an incomplete UTF-8 character's leading bytes
};

}  // namespace magnetar::tokenizer
