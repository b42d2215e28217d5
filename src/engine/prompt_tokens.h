// A rendered prompt (chat/prompt.h) as token ids: each control piece is its token, plain text is
// encoded without special-token matching, so client text can never turn into control tokens.
#pragma once

#include <cstdint>
#include <vector>

#include "chat/prompt.h"
#include "tokenizer/tokenizer.h"

namespace magnetar::engine {

// Throws std::runtime_error when the vocabulary lacks a control token the prompt uses.
std::vector<int32_t> prompt_tokens(const tokenizer::Tokenizer& tokenizer,
                                   const chat::Prompt& prompt);

}  // namespace magnetar::engine
