#include "tokenizer/utf8.h"

namespace magnetar::tokenizer {
namespace {

// The number of bytes of a character starting with `lead`, or 0 for a byte that cannot start one
// (continuation bytes, C0/C1 which only begin overlong forms, F5..FF which exceed U+10FFFF).
size_t sequence_length(uint8_t lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return 2;
  if (lead >= 0xE0 && lead <= 0xEF) return 3;
  if (lead >= 0xF0 && lead <= 0xF4) return 4;
  return 0;
}

// The allowed range of the byte after `lead`; it excludes overlong forms (E0, F0), surrogates
// (ED) and code points above U+10FFFF (F4).
bool valid_second(uint8_t lead, uint8_t b) {
  switch (lead) {
    case 0xE0:
      return b >= 0xA0 && b <= 0xBF;
    case 0xED:
      return b >= 0x80 && b <= 0x9F;
    case 0xF0:
      return b >= 0x90 && b <= 0xBF;
    case 0xF4:
      return b >= 0x80 && b <= 0x8F;
    default:
      return b >= 0x80 && b <= 0xBF;
  }
}

bool is_continuation(uint8_t b) { return (b & 0xC0) == 0x80; }

// Whether text[pos..pos+avail) is a valid prefix (possibly all) of one character of length n.
bool valid_prefix(std::string_view text, size_t pos, size_t n, size_t avail) {
  const auto lead = static_cast<uint8_t>(text[pos]);
  for (size_t i = 1; i < avail && i < n; ++i) {
    const auto b = static_cast<uint8_t>(text[pos + i]);
    if (i == 1 ? !valid_second(lead, b) : !is_continuation(b)) return false;
  }
  return true;
}

}  // namespace

std::optional<uint32_t> next_code_point(std::string_view text, size_t& pos) {
  if (pos >= text.size()) return std::nullopt;
  const auto lead = static_cast<uint8_t>(text[pos]);
  const size_t n = sequence_length(lead);
  if (n == 0 || text.size() - pos < n || !valid_prefix(text, pos, n, n)) return std::nullopt;
  uint32_t cp = n == 1 ? lead : lead & (0x7F >> n);
  for (size_t i = 1; i < n; ++i) cp = (cp << 6) | (static_cast<uint8_t>(text[pos + i]) & 0x3F);
  pos += n;
  return cp;
}

size_t valid_prefix_length(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    if (static_cast<uint8_t>(text[pos]) < 0x80) {
      ++pos;  // the common case, without decoding
    } else if (!next_code_point(text, pos)) {
      break;
    }
  }
  return pos;
}

size_t incomplete_suffix_length(std::string_view text) {
  // A character has at most 4 bytes, so its lead is among the last 3 bytes if it is unfinished.
  for (size_t back = 1; back <= 3 && back <= text.size(); ++back) {
    const size_t pos = text.size() - back;
    const auto b = static_cast<uint8_t>(text[pos]);
    if (is_continuation(b)) continue;
    const size_t n = sequence_length(b);
    return n > back && valid_prefix(text, pos, n, back) ? back : 0;
  }
  return 0;
}

void append_utf8(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

}  // namespace magnetar::tokenizer
