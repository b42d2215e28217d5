// Token ids of a rendered prompt (chat/prompt.h): control pieces are looked up as single tokens
// and client text is encoded with special-token matching off, so client text can never forge a
// control token.
//
// A live session or a stored state may already hold the model state for the first bytes of a
// prompt; only the rest is tokenised then (server-api.md §15: the suffix after a byte boundary is
// always tokenised fresh). A boundary inside a plain piece splits that piece; a boundary inside a
// control token cannot be resumed from.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "chat/prompt.h"
#include "tokenizer/tokenizer.h"

namespace magnetar::engine {

// Throws std::runtime_error when the vocabulary lacks a control token of the prompt.
std::vector<int32_t> prompt_tokens(const tokenizer::Tokenizer& tokenizer,
                                   const chat::Prompt& prompt);

// The ids of the prompt's bytes from `byte_offset` on; nullopt when the offset falls inside a
// control token or past the end.
std::optional<std::vector<int32_t>> prompt_tokens_from(const tokenizer::Tokenizer& tokenizer,
                                                       const chat::Prompt& prompt,
                                                       size_t byte_offset);

}  // namespace magnetar::engine
