#include "tokenizer/byte_alphabet.h"

#include <array>

#include "tokenizer/utf8.h"

namespace magnetar::tokenizer {
namespace {

bool is_printable(uint32_t b) {
  return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

// code_point[b] for every byte, and the inverse for U+0000 .. U+0143.
struct Alphabet {
  std::array<uint32_t, 256> code_point{};
  std::array<int16_t, 0x144> byte{};

  Alphabet() {
    byte.fill(-1);
    uint32_t next = 0x100;
    for (uint32_t b = 0; b < 256; ++b) {
      code_point[b] = is_printable(b) ? b : next++;
      byte[code_point[b]] = static_cast<int16_t>(b);
    }
  }
};

const Alphabet& alphabet() {
  static const Alphabet table;
  return table;
}

}  // namespace

std::string byte_to_symbol(uint8_t byte) {
  std::string out;
  append_utf8(alphabet().code_point[byte], out);
  return out;
}

std::optional<std::string> symbols_to_bytes(std::string_view symbols) {
  std::string out;
  out.reserve(symbols.size());
  size_t pos = 0;
  while (pos < symbols.size()) {
    std::optional<uint32_t> cp = next_code_point(symbols, pos);
    if (!cp || *cp >= alphabet().byte.size() || alphabet().byte[*cp] < 0) return std::nullopt;
    out.push_back(static_cast<char>(alphabet().byte[*cp]));
  }
  return out;
}

}  // namespace magnetar::tokenizer
