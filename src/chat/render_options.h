// Options of the DeepSeek V4 encoding (official-encoding.md §1.2) and the mapping of the effort
// names clients send onto them (§1.10: as DeepSeek's API maps them).
#pragma once

#include <string_view>

namespace magnetar::chat {

enum class ThinkingMode { kChat, kThinking };

// Only "high" and "max" exist in the V4 preview encoder; "high" renders exactly like no effort.
enum class ReasoningEffort { kHigh, kMax };

struct RenderOptions {
  ThinkingMode mode = ThinkingMode::kThinking;
  ReasoningEffort effort = ReasoningEffort::kHigh;
  // Drop the reasoning of turns before the last user/developer message (thinking mode). Forced off
  // when any message defines tools (§2.3).
  bool drop_thinking = true;
  bool add_bos = true;
  // Tool-call arguments that parse to a non-object (an array, a number, ...) make the official
  // encoder fail. By default they render as one `arguments` string parameter, as ds4 does
  // (official-encoding.md §6 row 21, a documented deviation); true restores the rejection.
  bool reject_non_object_arguments = false;
};

// The encoder's own option spellings: "chat" / "thinking", and null / "high" / "max". Anything
// else is a ChatError (§1.9).
ThinkingMode parse_thinking_mode(std::string_view name);
ReasoningEffort parse_reasoning_effort(std::string_view name);

// Applies an effort name as DeepSeek's API does: "none" turns thinking off; "low", "medium",
// "high" mean high; "xhigh" and "max" mean max. Unknown names are a ChatError.
void apply_effort_name(std::string_view name, RenderOptions& options);

}  // namespace magnetar::chat
