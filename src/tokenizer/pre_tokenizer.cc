#include "tokenizer/pre_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <array>
#include <stdexcept>
#include <string>

namespace magnetar::tokenizer {
namespace {

// The White_Space property (Unicode 15), as a class body.
constexpr std::string_view kWhiteSpace =
    R"(\t\n\x{0B}\f\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F})"
    R"(\x{3000})";

std::string pattern_3() {
  const std::string s = "[" + std::string(kWhiteSpace) + "]";
  const std::string not_s = "[^" + std::string(kWhiteSpace) + "]";
  return R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+)"
         R"(|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+)"
         R"(| ?[\p{P}\p{S}]+[\r\n]*)"
         "|" +
         s +
         R"(*[\r\n]+)"
         "|" +
         s + "+(?!" + not_s +
         ")"
         "|" +
         s + "+";
}

struct CodeDeleter {
  void operator()(pcre2_code* code) const { pcre2_code_free(code); }
};
struct MatchDataDeleter {
  void operator()(pcre2_match_data* data) const { pcre2_match_data_free(data); }
};
using Code = std::unique_ptr<pcre2_code, CodeDeleter>;
using MatchData = std::unique_ptr<pcre2_match_data, MatchDataDeleter>;

Code compile(const std::string& pattern) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  Code code(pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                          PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &error, &offset, nullptr));
  if (!code) {
    std::array<PCRE2_UCHAR, 256> message{};
    pcre2_get_error_message(error, message.data(), message.size());
    throw std::runtime_error("pre-tokenizer: PCRE2 rejects pattern at offset " +
                             std::to_string(offset) + ": " +
                             reinterpret_cast<const char*>(message.data()));
  }
  // Without a JIT (some platforms) pcre2_match interprets the pattern: slower, same result.
  pcre2_jit_compile(code.get(), PCRE2_JIT_COMPLETE);
  return code;
}

// Splits `text` around the matches of `code`, appending matches and non-empty gaps.
void split_isolated(const pcre2_code* code, pcre2_match_data* data, std::string_view text,
                    std::vector<std::string_view>& out) {
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t gap_start = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    const int rc = pcre2_match(code, subject, text.size(), pos, PCRE2_NO_UTF_CHECK, data, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) throw std::runtime_error("pre-tokenizer: PCRE2 match error " + std::to_string(rc));
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data);
    const size_t begin = ovector[0];
    const size_t end = ovector[1];
    if (begin > gap_start) out.push_back(text.substr(gap_start, begin - gap_start));
    // None of the patterns can match the empty string, so every match moves the scan forward.
    if (end == begin) throw std::logic_error("pre-tokenizer: a pattern matched the empty string");
    out.push_back(text.substr(begin, end - begin));
    gap_start = pos = end;
  }
  if (gap_start < text.size()) out.push_back(text.substr(gap_start));
}

}  // namespace

struct PreTokenizer::Patterns {
  std::array<Code, 3> stages;
};

PreTokenizer::PreTokenizer() : patterns_(std::make_unique<Patterns>()) {
  patterns_->stages[0] = compile(R"(\p{N}{1,3})");
  patterns_->stages[1] = compile(R"([\x{4E00}-\x{9FA5}\x{3040}-\x{309F}\x{30A0}-\x{30FF}]+)");
  patterns_->stages[2] = compile(pattern_3());
}

PreTokenizer::~PreTokenizer() = default;
PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;

void PreTokenizer::split(std::string_view text, std::vector<std::string_view>& pieces) const {
  // One match block serves all three patterns: none has capture groups.
  thread_local MatchData data(pcre2_match_data_create(1, nullptr));
  std::vector<std::string_view> current{text};
  std::vector<std::string_view> next;
  for (size_t stage = 0; stage < patterns_->stages.size(); ++stage) {
    std::vector<std::string_view>& out = stage + 1 == patterns_->stages.size() ? pieces : next;
    for (std::string_view piece : current) {
      split_isolated(patterns_->stages[stage].get(), data.get(), piece, out);
    }
    if (&out == &next) {
      current.swap(next);
      next.clear();
    }
  }
}

}  // namespace magnetar::tokenizer
