// The UTF-8 rules the tokenizer relies on (RFC 3629: no overlong forms, no surrogates, nothing
// above U+10FFFF).
//
// The pre-tokenizer's regexes run on valid UTF-8 only (PCRE2 in UTF mode has undefined behaviour
// otherwise), and the streaming decoder must tell a character that is still arriving from bytes
// that can never form one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace magnetar::tokenizer {

// Decodes the character at `pos` and advances `pos` past it; nullopt (pos unchanged) when the
// bytes there are not a complete, valid character.
std::optional<uint32_t> next_code_point(std::string_view text, size_t& pos);

// The length of the longest prefix of `text` that is valid UTF-8.
size_t valid_prefix_length(std::string_view text);

// How many trailing bytes of `text` are the beginning of a valid character whose remaining bytes
// have not arrived yet (0 to 3).
size_t incomplete_suffix_length(std::string_view text);

void append_utf8(uint32_t code_point, std::string& out);

}  // namespace magnetar::tokenizer
