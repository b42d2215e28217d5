#include "chat/dsml_writer.h"

#include "chat/chat_error.h"
#include "chat/python_json.h"

namespace magnetar::chat {

std::vector<DsmlParameter> dsml_parameters(const ToolCall& call, bool reject_non_object) {
  if (!call.arguments.is_string()) {
    // An already-decoded value is not a JSON text: the reference's decoder refuses it and falls
    // back to one parameter carrying the value itself.
    return {{"arguments", false, dump_python_json(call.arguments)}};
  }
  const std::string& text = call.arguments.get_ref<const std::string&>();
  std::optional<nlohmann::ordered_json> parsed = parse_python_json(text);
  if (!parsed) return {{"arguments", true, text}};
  if (!parsed->is_object()) {
    if (reject_non_object) {
      throw ChatError("arguments of tool call '" + call.name + "' are JSON but not an object");
    }
    return {{"arguments", true, text}};
  }
  std::vector<DsmlParameter> params;
  for (auto it = parsed->begin(); it != parsed->end(); ++it) {
    if (it.value().is_string()) {
      params.push_back({it.key(), true, it.value().get<std::string>()});
    } else {
      params.push_back({it.key(), false, dump_python_json(it.value())});
    }
  }
  return params;
}

void append_tool_calls_dsml(Prompt& prompt, const std::vector<ToolCall>& calls,
                            bool reject_non_object) {
  if (calls.empty()) return;
  prompt.add_template("\n\n<｜DSML｜tool_calls>\n");
  for (size_t i = 0; i < calls.size(); ++i) {
    if (i > 0) prompt.add_text("\n");
    prompt.add_template("<｜DSML｜invoke name=\"");
    prompt.add_text(calls[i].name);
    prompt.add_text("\">\n");
    std::vector<DsmlParameter> params = dsml_parameters(calls[i], reject_non_object);
    for (size_t k = 0; k < params.size(); ++k) {
      if (k > 0) prompt.add_text("\n");
      prompt.add_template("<｜DSML｜parameter name=\"");
      prompt.add_text(params[k].name);
      prompt.add_text(params[k].is_string ? "\" string=\"true\">" : "\" string=\"false\">");
      prompt.add_text(params[k].value);
      prompt.add_template("</｜DSML｜parameter>");
    }
    prompt.add_template("\n</｜DSML｜invoke>");
  }
  prompt.add_template("\n</｜DSML｜tool_calls>");
}

}  // namespace magnetar::chat
