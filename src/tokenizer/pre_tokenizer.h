// The official DeepSeek pre-tokenizer: three regex splits in sequence (official-encoding.md
// §5.3), each applied to every piece the previous one produced, in "Isolated" mode: every match
// is a piece and every non-empty gap between matches is a piece, in order.
//
//   1. \p{N}{1,3}                        digits, in runs of at most three
//   2. [一-龥぀-ゟ゠-ヿ]+                    CJK ideographs, hiragana and katakana runs
//   3. [!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+ | [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+ |
//       ?[\p{P}\p{S}]+[\r\n]* | \s*[\r\n]+ | \s+(?!\S) | \s+
//
// GGUF files carry only the pre-tokenizer's name (tokenizer.ggml.pre = "joyai-llm"), so the
// patterns are the ones of DeepSeek's tokenizer.json, written here. They run under PCRE2 with UTF
// and UCP, whose Perl-style leftmost-first alternation is that of Oniguruma, the engine Hugging
// Face compiles them with. One adjustment keeps the two engines' Unicode classes equal: PCRE2's
// UCP \s also matches U+180E (a format character since Unicode 6.3), Oniguruma's \s is exactly the
// White_Space property, so \s and \S are spelled out as that property.
#pragma once

#include <memory>
#include <string_view>
#include <vector>

namespace magnetar::tokenizer {

class PreTokenizer {
 public:
  // Compiles the patterns (with the JIT where PCRE2 has one). Throws std::runtime_error if PCRE2
  // rejects them, which would mean a PCRE2 built without Unicode support.
  PreTokenizer();
  ~PreTokenizer();
  PreTokenizer(PreTokenizer&&) noexcept;
  PreTokenizer& operator=(PreTokenizer&&) noexcept;

  // Appends the pieces of `text`, views into it, to `pieces`. `text` must be valid UTF-8.
  // Thread-safe.
  void split(std::string_view text, std::vector<std::string_view>& pieces) const;

 private:
  struct Patterns;
  std::unique_ptr<Patterns> patterns_;
};

}  // namespace magnetar::tokenizer
