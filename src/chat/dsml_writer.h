// The canonical DSML form of assistant tool calls in history (official-encoding.md §1.5, §2.9).
// History is always re-rendered this way, never replayed from sampled bytes, so the prompt of a
// tool loop only depends on the parsed calls.
#pragma once

#include <string>
#include <vector>

#include "chat/message.h"
#include "chat/prompt.h"

namespace magnetar::chat {

// One `<｜DSML｜parameter>` element: `value` is inserted verbatim (no escaping of any kind).
struct DsmlParameter {
  std::string name;
  bool is_string = true;  // string="true": the decoded JSON string; else the value's JSON text
  std::string value;
};

// The parameters of a call: one per member of the arguments object, in member order; arguments
// that are not a JSON object text become a single `arguments` parameter (§1.5 case 2, and case 3
// unless `reject_non_object` asks for the official ChatError).
std::vector<DsmlParameter> dsml_parameters(const ToolCall& call, bool reject_non_object);

// Appends "\n\n<｜DSML｜tool_calls>\n" INVOKE {"\n" INVOKE} "\n</｜DSML｜tool_calls>". Nothing is
// appended for an empty list.
void append_tool_calls_dsml(Prompt& prompt, const std::vector<ToolCall>& calls,
                            bool reject_non_object);

}  // namespace magnetar::chat
