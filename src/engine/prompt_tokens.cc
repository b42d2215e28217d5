#include "engine/prompt_tokens.h"

#include <stdexcept>
#include <string_view>

namespace magnetar::engine {
namespace {

void append_piece(const tokenizer::Tokenizer& tokenizer, const chat::PromptPiece& piece,
                  std::string_view text, std::vector<int32_t>& ids) {
  if (piece.is_control) {
    std::optional<int32_t> id = tokenizer.token_id(piece.text);
    if (!id) throw std::runtime_error("the model's vocabulary has no token " + piece.text);
    ids.push_back(*id);
    return;
  }
  std::vector<int32_t> more = tokenizer.encode(text, /*allow_special=*/false);
  ids.insert(ids.end(), more.begin(), more.end());
}

}  // namespace

std::vector<int32_t> prompt_tokens(const tokenizer::Tokenizer& tokenizer,
                                   const chat::Prompt& prompt) {
  std::vector<int32_t> ids;
  for (const chat::PromptPiece& piece : prompt.pieces()) {
    append_piece(tokenizer, piece, piece.text, ids);
  }
  return ids;
}

std::optional<std::vector<int32_t>> prompt_tokens_from(const tokenizer::Tokenizer& tokenizer,
                                                       const chat::Prompt& prompt,
                                                       size_t byte_offset) {
  std::vector<int32_t> ids;
  size_t start = 0;  // byte offset of the current piece
  bool reached = false;
  for (const chat::PromptPiece& piece : prompt.pieces()) {
    const size_t end = start + piece.text.size();
    if (reached) {
      append_piece(tokenizer, piece, piece.text, ids);
    } else if (byte_offset < end) {
      if (piece.is_control && byte_offset != start) return std::nullopt;
      append_piece(tokenizer, piece, std::string_view(piece.text).substr(byte_offset - start), ids);
      reached = true;
    } else if (byte_offset == end) {
      reached = true;
    }
    start = end;
  }
  if (!reached && byte_offset != start) return std::nullopt;
  return ids;
}

}  // namespace magnetar::engine
