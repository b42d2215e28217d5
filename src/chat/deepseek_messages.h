// Messages in the official encoder's own input format (official-encoding.md §1.3): the dicts that
// DeepSeek's encoding_dsv4.py takes and its test vectors use, e.g.
//   {"role": "assistant", "reasoning_content": "...", "content": "...",
//    "tool_calls": [{"id": "call_1", "function": {"name": "f", "arguments": "{...}"}}]}
// Shapes the encoder rejects, and the non-string contents it would print as Python objects, are
// a ChatError here (§1.9).
#pragma once

#include <nlohmann/json.hpp>
#include <vector>

#include "chat/message.h"

namespace magnetar::chat {

std::vector<Message> messages_from_deepseek_json(const nlohmann::ordered_json& messages);

// One message. Exposed for the request adapters, which build such dicts from their own shapes.
Message message_from_deepseek_json(const nlohmann::ordered_json& message);

// The `function` objects of an OpenAI-style tools array (each element must have one).
std::vector<nlohmann::ordered_json> tools_from_json(const nlohmann::ordered_json& tools);

}  // namespace magnetar::chat
