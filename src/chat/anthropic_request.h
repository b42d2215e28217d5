// Anthropic messages requests (server-api.md §5.4) → messages and options.
//
// `system` (a string or text blocks; blocks starting with "x-anthropic-" are client metadata and
// dropped) becomes a system message at index 0, blocks joined with "\n\n". In messages, text
// blocks become user text (each its own block, joined "\n\n" by the encoder's folding) or
// assistant content; `thinking` blocks become assistant reasoning (`redacted_thinking` is opaque
// and dropped); `tool_use` becomes a tool call whose arguments are its `input` serialised as the
// encoder serialises JSON; `tool_result` becomes a tool message (text blocks kept, other blocks
// render as "[Unsupported TYPE]"). Images and documents are rejected. Tools
// {name, description, input_schema} are converted to OpenAI `function` objects and attached as
// official-encoding.md §1.10 says; `tool_choice: {"type": "none"}` leaves them out. Thinking is on
// unless `thinking`, `output_config.effort` or `reasoning_effort` say otherwise.
#pragma once

#include <nlohmann/json.hpp>

#include "chat/chat_request.h"

namespace magnetar::chat {

ChatRequest chat_request_from_anthropic(const nlohmann::ordered_json& request);

}  // namespace magnetar::chat
