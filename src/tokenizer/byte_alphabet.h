// The GPT-2 byte alphabet of byte-level BPE.
//
// Byte-level vocabularies store every token as a string of printable characters, one per byte:
// the printable bytes ! .. ~, ¡ .. ¬ and ® .. ÿ stand for themselves, and the other 68 bytes
// (controls, space, DEL, NBSP, soft hyphen) are moved, in byte order, to U+0100 .. U+0143. So a
// space is "Ġ" (U+0120) and a newline "Ċ" (U+010A) in tokenizer.ggml.tokens and merges.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace magnetar::tokenizer {

// The UTF-8 encoding of the alphabet character that stands for `byte`.
std::string byte_to_symbol(uint8_t byte);

// The bytes a string of alphabet characters stands for, or nullopt when `symbols` is not valid
// UTF-8 or holds a character outside the alphabet (as added tokens such as <｜User｜> do).
std::optional<std::string> symbols_to_bytes(std::string_view symbols);

}  // namespace magnetar::tokenizer
