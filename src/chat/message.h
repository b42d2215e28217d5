// The conversation the DeepSeek V4 encoding renders (official-encoding.md §1.3–§1.7): the
// messages of the official encoder's input, already checked for shape by an adapter. Fields mean
// what the encoder makes of them, so a field the encoder ignores for a role is left unset.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace magnetar::chat {

enum class Role {
  kSystem,          // text rendered in place, no marker; may carry tools and response_format
  kDeveloper,       // a <｜User｜> turn that may carry tools and response_format
  kUser,            // a <｜User｜> turn
  kAssistant,       // reasoning, content, DSML tool calls, EOS
  kTool,            // a tool result, folded into a <｜User｜> turn
  kLatestReminder,  // <｜latest_reminder｜> + content (date, locale, ...)
};

// One element of a tool result given as an array: text blocks contribute their text, any other
// type renders as "[Unsupported TYPE]".
struct ContentPart {
  std::string type;
  std::string text;
};

// A call in assistant history. `arguments` is normally a JSON string holding the argument
// object; any other JSON value is kept as is and renders as one `arguments` parameter (§1.5).
struct ToolCall {
  std::string id;  // optional; only orders tool results (§2.2)
  std::string name;
  nlohmann::ordered_json arguments = "";
};

struct Message {
  Role role = Role::kUser;
  // Text content. For tool and latest_reminder messages a JSON null is rendered as the four
  // characters "None" (Python's text of null): adapters store that text here.
  std::string content;
  // Tool messages only: the content was an array of blocks (rendered joined by "\n\n").
  std::optional<std::vector<ContentPart>> content_parts;
  std::string reasoning;             // assistant: reasoning_content
  std::vector<ToolCall> tool_calls;  // assistant
  // The `function` objects of the tools a system or developer message defines (an assistant's
  // tools are not rendered but still keep earlier reasoning, §2.3). Member order is the client's.
  std::vector<nlohmann::ordered_json> tools;
  nlohmann::ordered_json response_format;  // system/developer; rendered when truthy (§1.8)
  std::optional<std::string> task;         // quick-instruction task (§1.7): "action", "title", ...
  bool wo_eos = false;                     // assistant: leave the turn open (no EOS), for prefill
  std::string tool_call_id;                // tool: the call this result answers
};

}  // namespace magnetar::chat
