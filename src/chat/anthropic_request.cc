#include "chat/anthropic_request.h"

#include <string>

#include "chat/chat_error.h"
#include "chat/deepseek_messages.h"
#include "chat/python_json.h"

namespace magnetar::chat {
namespace {

using Json = nlohmann::ordered_json;

std::string block_type(const Json& block) {
  if (block.is_string()) return "text";
  if (!block.is_object()) throw ChatError("content blocks must be objects");
  return block.value("type", "");
}

std::string block_text(const Json& block) {
  return block.is_string() ? block.get<std::string>() : block.value("text", "");
}

Json blocks_of(const Json& content) {
  if (content.is_string()) return Json::array({content});
  if (content.is_null()) return Json::array();
  if (!content.is_array()) throw ChatError("content must be a string or an array of blocks");
  return content;
}

std::string system_text(const Json& system) {
  std::string out;
  bool first = true;
  for (const Json& block : blocks_of(system)) {
    if (block_type(block) != "text") throw ChatError("system blocks must be text");
    std::string text = block_text(block);
    if (text.starts_with("x-anthropic-")) continue;
    if (!first) out += "\n\n";
    out += text;
    first = false;
  }
  return out;
}

Json tool_result_message(const Json& block) {
  Json content;
  const Json raw = block.value("content", Json());
  if (raw.is_string() || raw.is_null()) {
    content = raw.is_null() ? Json("") : raw;
  } else {
    content = Json::array();
    for (const Json& part : blocks_of(raw)) {
      content.push_back({{"type", block_type(part)}, {"text", block_text(part)}});
    }
  }
  return {{"role", "tool"}, {"tool_call_id", block.value("tool_use_id", "")}, {"content", content}};
}

void add_user(const Json& content, std::vector<Message>& out) {
  for (const Json& block : blocks_of(content)) {
    std::string type = block_type(block);
    if (type == "text") {
      out.push_back(message_from_deepseek_json({{"role", "user"}, {"content", block_text(block)}}));
    } else if (type == "tool_result") {
      out.push_back(message_from_deepseek_json(tool_result_message(block)));
    } else {
      throw ChatError("user content block of type '" + type + "' is not supported");
    }
  }
}

void add_assistant(const Json& content, std::vector<Message>& out) {
  Message m;
  m.role = Role::kAssistant;
  bool has_text = false;
  for (const Json& block : blocks_of(content)) {
    std::string type = block_type(block);
    if (type == "text") {
      if (has_text) m.content += "\n\n";
      m.content += block_text(block);
      has_text = true;
    } else if (type == "thinking") {
      m.reasoning += block.value("thinking", "");
    } else if (type == "tool_use") {
      ToolCall call;
      call.id = block.value("id", "");
      call.name = block.value("name", "");
      call.arguments = dump_python_json(block.value("input", Json::object()));
      m.tool_calls.push_back(std::move(call));
    } else if (type != "redacted_thinking") {
      throw ChatError("assistant content block of type '" + type + "' is not supported");
    }
  }
  out.push_back(std::move(m));
}

std::vector<Json> request_tools(const Json& tools) {
  std::vector<Json> out;
  if (tools.is_null()) return out;
  if (!tools.is_array()) throw ChatError("tools must be an array");
  for (const Json& t : tools) {
    if (!t.is_object() || !t.contains("name")) throw ChatError("tool without a name");
    Json fn = {{"name", t["name"]}};
    if (t.contains("description")) fn["description"] = t["description"];
    if (t.contains("input_schema")) fn["parameters"] = t["input_schema"];
    out.push_back(std::move(fn));
  }
  return out;
}

ChatRequest convert_request(const nlohmann::ordered_json& request) {
  if (!request.is_object()) throw ChatError("request must be a JSON object");
  if (!request.contains("messages") || !request["messages"].is_array()) {
    throw ChatError("missing messages");
  }
  ChatRequest out;
  if (request.contains("system") && !request["system"].is_null()) {
    Message system;
    system.role = Role::kSystem;
    system.content = system_text(request["system"]);
    out.messages.push_back(std::move(system));
  }
  for (const Json& m : request["messages"]) {
    if (!m.is_object()) throw ChatError("message must be an object");
    std::string role = m.value("role", "");
    if (role == "user") {
      add_user(m.value("content", Json()), out.messages);
    } else if (role == "assistant") {
      add_assistant(m.value("content", Json()), out.messages);
    } else {
      throw ChatError("unknown role '" + role + "' (Anthropic messages are user or assistant)");
    }
  }
  std::vector<Json> tools = request_tools(request.value("tools", Json()));
  Json choice = request.value("tool_choice", Json());
  if (choice.is_object() && choice.value("type", "") == "none") tools.clear();
  attach_request_tools(out.messages, tools, nullptr);
  Json effort = request.value("reasoning_effort", Json());
  if (request.contains("output_config") && request["output_config"].is_object() &&
      request["output_config"].contains("effort")) {
    effort = request["output_config"]["effort"];
  }
  apply_thinking_controls(request.value("thinking", Json()), effort, out.options);
  return out;
}

}  // namespace

ChatRequest chat_request_from_anthropic(const nlohmann::ordered_json& request) {
  try {
    return convert_request(request);
  } catch (const nlohmann::json::type_error& e) {
    // A field of the wrong JSON type (e.g. a numeric role) is the client's error, like any other.
    throw ChatError(std::string("a request field has the wrong JSON type: ") + e.what());
  }
}

}  // namespace magnetar::chat
