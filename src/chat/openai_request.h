// OpenAI chat-completions requests (server-api.md §5.1) → messages and options.
//
// Roles system, developer, user, assistant, tool (and `function`, treated as tool) and
// latest_reminder. Content arrays are flattened: each text part (or bare string) becomes its own
// text block, joined with "\n\n" (official-encoding.md §6 row 29); other parts (images, audio,
// files) are rejected. Tool messages keep their block array as the encoder renders it. Assistant
// reasoning comes from `reasoning_content` (or vLLM's `reasoning`); tool-call arguments given as
// a JSON value instead of a JSON text are serialised first, so they still render one parameter per
// member. Request `tools` and `response_format` (type "text" means none) attach to the first
// system message (§1.10); `tool_choice: "none"` leaves the tools out. Thinking is on unless
// `thinking`/`reasoning_effort` say otherwise.
#pragma once

#include <nlohmann/json.hpp>

#include "chat/chat_request.h"

namespace magnetar::chat {

ChatRequest chat_request_from_openai(const nlohmann::ordered_json& request);

}  // namespace magnetar::chat
