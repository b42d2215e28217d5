#include "chat/deepseek_messages.h"

#include <string>

#include "chat/chat_error.h"
#include "chat/python_json.h"

namespace magnetar::chat {
namespace {

using Json = nlohmann::ordered_json;

const Json* member(const Json& object, const char* key) {
  auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

// A string field where absent and null both mean empty.
std::string optional_string(const Json& m, const char* key, const char* role) {
  const Json* v = member(m, key);
  if (!v || v->is_null()) return "";
  if (!v->is_string()) throw ChatError(std::string(role) + " " + key + " must be a string");
  return v->get<std::string>();
}

// Content of tool and latest_reminder messages: null is rendered as Python prints None.
std::string string_or_none(const Json& m, const char* role) {
  const Json* v = member(m, "content");
  if (v && v->is_null()) return "None";
  return optional_string(m, "content", role);
}

std::optional<std::string> task_of(const Json& m) {
  const Json* v = member(m, "task");
  if (!v || v->is_null()) return std::nullopt;
  if (!v->is_string()) throw ChatError("task must be a string");
  return v->get<std::string>();
}

ToolCall tool_call_from_json(const Json& c) {
  const Json* fn = c.is_object() ? member(c, "function") : nullptr;
  if (!fn || !fn->is_object()) throw ChatError("tool call without a function object");
  const Json* name = member(*fn, "name");
  const Json* arguments = member(*fn, "arguments");
  if (!name || !name->is_string()) throw ChatError("tool call without function.name");
  if (!arguments)
    throw ChatError("tool call '" + name->get<std::string>() + "' without function.arguments");
  ToolCall call;
  call.name = name->get<std::string>();
  call.arguments = *arguments;
  for (const Json* id : {member(c, "id"), member(*fn, "id")}) {
    if (id && id->is_string() && !id->get<std::string>().empty()) {
      call.id = id->get<std::string>();
      break;
    }
  }
  return call;
}

}  // namespace

std::vector<nlohmann::ordered_json> tools_from_json(const nlohmann::ordered_json& tools) {
  std::vector<Json> out;
  if (tools.is_null()) return out;
  if (!tools.is_array()) throw ChatError("tools must be an array");
  for (const Json& t : tools) {
    const Json* fn = t.is_object() ? member(t, "function") : nullptr;
    if (!fn || !fn->is_object()) throw ChatError("tool definition without a function object");
    out.push_back(*fn);
  }
  return out;
}

Message message_from_deepseek_json(const nlohmann::ordered_json& m) {
  if (!m.is_object()) throw ChatError("message must be an object");
  const Json* role = member(m, "role");
  if (!role || !role->is_string()) throw ChatError("message without a role");
  std::string r = role->get<std::string>();
  Message out;
  if (r == "system" || r == "developer") {
    out.role = r == "system" ? Role::kSystem : Role::kDeveloper;
    out.content = optional_string(m, "content", r.c_str());
    if (const Json* tools = member(m, "tools")) out.tools = tools_from_json(*tools);
    if (const Json* rf = member(m, "response_format")) out.response_format = *rf;
  } else if (r == "user") {
    out.role = Role::kUser;
    const Json* content = member(m, "content");
    if (content && !content->is_string()) {
      throw ChatError("user content must be a string (null and content arrays are not accepted)");
    }
    if (content) out.content = content->get<std::string>();
    out.task = task_of(m);
  } else if (r == "assistant") {
    out.role = Role::kAssistant;
    out.content = optional_string(m, "content", "assistant");
    out.reasoning = optional_string(m, "reasoning_content", "assistant");
    if (const Json* calls = member(m, "tool_calls"); calls && !calls->is_null()) {
      if (!calls->is_array()) throw ChatError("tool_calls must be an array");
      for (const Json& c : *calls) out.tool_calls.push_back(tool_call_from_json(c));
    }
    if (const Json* tools = member(m, "tools")) out.tools = tools_from_json(*tools);
    out.task = task_of(m);
    if (const Json* wo = member(m, "wo_eos")) out.wo_eos = json_truthy(*wo);
  } else if (r == "tool") {
    out.role = Role::kTool;
    out.tool_call_id = optional_string(m, "tool_call_id", "tool");
    const Json* content = member(m, "content");
    if (content && content->is_array()) {
      std::vector<ContentPart> parts;
      for (const Json& p : *content) {
        if (!p.is_object()) throw ChatError("tool content blocks must be objects");
        parts.push_back({optional_string(p, "type", "tool content block"),
                         optional_string(p, "text", "tool content block")});
      }
      out.content_parts = std::move(parts);
    } else {
      out.content = string_or_none(m, "tool");
    }
  } else if (r == "latest_reminder") {
    out.role = Role::kLatestReminder;
    out.content = string_or_none(m, "latest_reminder");
  } else {
    throw ChatError("unknown role '" + r + "'");
  }
  return out;
}

std::vector<Message> messages_from_deepseek_json(const nlohmann::ordered_json& messages) {
  if (!messages.is_array()) throw ChatError("messages must be an array");
  std::vector<Message> out;
  for (const Json& m : messages) out.push_back(message_from_deepseek_json(m));
  return out;
}

}  // namespace magnetar::chat
