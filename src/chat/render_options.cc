#include "chat/render_options.h"

#include <string>

#include "chat/chat_error.h"

namespace magnetar::chat {

ThinkingMode parse_thinking_mode(std::string_view name) {
  if (name == "chat") return ThinkingMode::kChat;
  if (name == "thinking") return ThinkingMode::kThinking;
  throw ChatError("invalid thinking_mode '" + std::string(name) +
                  "' (the encoder knows \"chat\" and \"thinking\")");
}

ReasoningEffort parse_reasoning_effort(std::string_view name) {
  if (name == "high") return ReasoningEffort::kHigh;
  if (name == "max") return ReasoningEffort::kMax;
  throw ChatError("invalid reasoning_effort '" + std::string(name) +
                  "' (the encoder knows null, \"high\" and \"max\")");
}

void apply_effort_name(std::string_view name, RenderOptions& options) {
  if (name == "none") {
    options.mode = ThinkingMode::kChat;
  } else if (name == "low" || name == "medium" || name == "high") {
    options.effort = ReasoningEffort::kHigh;
  } else if (name == "xhigh" || name == "max") {
    options.effort = ReasoningEffort::kMax;
  } else {
    throw ChatError("invalid reasoning effort '" + std::string(name) +
                    "' (expected none, low, medium, high, xhigh or max)");
  }
}

}  // namespace magnetar::chat
