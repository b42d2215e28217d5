// A client request reduced to what the renderer needs, and the conventions shared by the request
// adapters (official-encoding.md §1.10): request-level tools and response_format go to the first
// system message, and thinking/effort controls map onto the encoder's options.
#pragma once

#include <nlohmann/json.hpp>
#include <vector>

#include "chat/message.h"
#include "chat/render_options.h"

namespace magnetar::chat {

struct ChatRequest {
  std::vector<Message> messages;
  RenderOptions options;
};

// Attaches request-level tools (OpenAI-shaped `function` objects) and a response format to the
// first system or developer message; request tools replace that message's tools of the same name.
// Without such a message an empty system message is inserted at index 0, so the prompt then starts
// with BOS + "\n\n## Tools".
void attach_request_tools(std::vector<Message>& messages,
                          const std::vector<nlohmann::ordered_json>& tools,
                          const nlohmann::ordered_json& response_format);

// Thinking is on (effort high) unless the request says otherwise. `thinking` may be a bool or an
// object whose type is "enabled", "adaptive" or "disabled"; an effort name applies as
// apply_effort_name() says. Invalid values are a ChatError.
void apply_thinking_controls(const nlohmann::ordered_json& thinking,
                             const nlohmann::ordered_json& effort, RenderOptions& options);

}  // namespace magnetar::chat
