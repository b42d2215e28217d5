#include "chat/openai_request.h"

#include <string>

#include "chat/chat_error.h"
#include "chat/deepseek_messages.h"
#include "chat/python_json.h"

namespace magnetar::chat {
namespace {

using Json = nlohmann::ordered_json;

// Content as one string; null stays null so that the encoder's own rules apply to it.
Json flatten_content(const Json& content) {
  if (!content.is_array()) return content;
  std::string text;
  bool first = true;
  for (const Json& part : content) {
    std::string piece;
    if (part.is_string()) {
      piece = part.get<std::string>();
    } else if (part.is_object() && part.value("type", "") == "text") {
      piece = part.value("text", "");
    } else {
      std::string type = part.is_object() ? part.value("type", "?") : part.type_name();
      throw ChatError("content part of type '" + type + "' is not supported (text only)");
    }
    if (!first) text += "\n\n";
    text += piece;
    first = false;
  }
  return text;
}

Json tool_content(const Json& content) {
  if (!content.is_array()) return content;
  Json parts = Json::array();
  for (const Json& part : content) {
    if (part.is_string()) {
      parts.push_back({{"type", "text"}, {"text", part}});
    } else if (part.is_object()) {
      parts.push_back(part);
    } else {
      throw ChatError("tool content parts must be objects or strings");
    }
  }
  return parts;
}

Json convert_message(const Json& m) {
  if (!m.is_object()) throw ChatError("message must be an object");
  Json out = m;
  std::string role = m.value("role", "user");
  if (role == "function") role = "tool";
  out["role"] = role;
  if (m.contains("content")) {
    out["content"] = role == "tool" ? tool_content(m["content"]) : flatten_content(m["content"]);
  }
  if (role == "assistant") {
    if (!m.contains("reasoning_content") && m.contains("reasoning")) {
      out["reasoning_content"] = flatten_content(m["reasoning"]);
    }
    if (m.contains("reasoning_content")) {
      out["reasoning_content"] = flatten_content(m["reasoning_content"]);
    }
    if (m.contains("tool_calls") && m["tool_calls"].is_array()) {
      for (Json& call : out["tool_calls"]) {
        if (!call.is_object() || !call.contains("function")) continue;
        Json& fn = call["function"];
        if (fn.is_object() && fn.contains("arguments") && !fn["arguments"].is_string() &&
            !fn["arguments"].is_null()) {
          fn["arguments"] = dump_python_json(fn["arguments"]);
        }
      }
    }
  }
  return out;
}

// Request tools: {"type": "function", "function": {...}}, or the flat {"type": "function",
// "name": ...} shape some clients send.
std::vector<Json> request_tools(const Json& tools) {
  if (tools.is_null()) return {};
  if (!tools.is_array()) throw ChatError("tools must be an array");
  Json wrapped = Json::array();
  for (const Json& t : tools) {
    if (t.is_object() && !t.contains("function") && t.contains("name")) {
      Json fn = t;
      fn.erase("type");
      wrapped.push_back({{"type", "function"}, {"function", fn}});
    } else {
      wrapped.push_back(t);
    }
  }
  return tools_from_json(wrapped);
}

ChatRequest convert_request(const nlohmann::ordered_json& request) {
  if (!request.is_object()) throw ChatError("request must be a JSON object");
  if (!request.contains("messages") || !request["messages"].is_array()) {
    throw ChatError("missing messages");
  }
  ChatRequest out;
  for (const Json& m : request["messages"]) {
    out.messages.push_back(message_from_deepseek_json(convert_message(m)));
  }
  std::vector<Json> tools = request_tools(request.value("tools", Json()));
  if (request.value("tool_choice", Json()) == "none") tools.clear();
  Json response_format = request.value("response_format", Json());
  if (response_format.is_object() && response_format.value("type", "") == "text") {
    response_format = nullptr;
  }
  attach_request_tools(out.messages, tools, response_format);
  apply_thinking_controls(request.value("thinking", Json()),
                          request.value("reasoning_effort", Json()), out.options);
  return out;
}

}  // namespace

ChatRequest chat_request_from_openai(const nlohmann::ordered_json& request) {
  try {
    return convert_request(request);
  } catch (const nlohmann::json::type_error& e) {
    // A field of the wrong JSON type (e.g. a numeric role) is the client's error, like any other.
    throw ChatError(std::string("a request field has the wrong JSON type: ") + e.what());
  }
}

}  // namespace magnetar::chat
