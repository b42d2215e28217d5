#include "engine/prompt_tokens.h"

#include <stdexcept>
#include <string>

namespace magnetar::engine {

std::vector<int32_t> prompt_tokens(const tokenizer::Tokenizer& tokenizer,
                                   const chat::Prompt& prompt) {
  std::vector<int32_t> ids;
  for (const chat::PromptPiece& piece : prompt.pieces()) {
    if (piece.is_control) {
      std::optional<int32_t> id = tokenizer.token_id(piece.text);
      if (!id) throw std::runtime_error("the model's vocabulary has no token " + piece.text);
      ids.push_back(*id);
    } else {
      std::vector<int32_t> more = tokenizer.encode(piece.text, /*allow_special=*/false);
      ids.insert(ids.end(), more.begin(), more.end());
    }
  }
  return ids;
}

}  // namespace magnetar::engine
