#include "chat/chat_request.h"

#include <algorithm>
#include <string>

#include "chat/chat_error.h"
#include "chat/python_json.h"

namespace magnetar::chat {

void attach_request_tools(std::vector<Message>& messages,
                          const std::vector<nlohmann::ordered_json>& tools,
                          const nlohmann::ordered_json& response_format) {
  if (tools.empty() && !json_truthy(response_format)) return;
  auto target = std::find_if(messages.begin(), messages.end(), [](const Message& m) {
    return m.role == Role::kSystem || m.role == Role::kDeveloper;
  });
  if (target == messages.end()) {
    Message system;
    system.role = Role::kSystem;
    target = messages.insert(messages.begin(), std::move(system));
  }
  for (const nlohmann::ordered_json& tool : tools) {
    auto same_name = [&](const nlohmann::ordered_json& t) {
      return t.contains("name") && tool.contains("name") && t["name"] == tool["name"];
    };
    std::erase_if(target->tools, same_name);
    target->tools.push_back(tool);
  }
  if (json_truthy(response_format)) target->response_format = response_format;
}

void apply_thinking_controls(const nlohmann::ordered_json& thinking,
                             const nlohmann::ordered_json& effort, RenderOptions& options) {
  if (effort.is_string()) {
    apply_effort_name(effort.get<std::string>(), options);
  } else if (!effort.is_null()) {
    throw ChatError("reasoning effort must be a string");
  }
  bool enabled = true;
  if (thinking.is_boolean()) {
    enabled = thinking.get<bool>();
  } else if (thinking.is_object()) {
    std::string type = thinking.value("type", "enabled");
    if (type == "disabled") {
      enabled = false;
    } else if (type != "enabled" && type != "adaptive") {
      throw ChatError("thinking.type must be enabled, adaptive or disabled (got '" + type + "')");
    }
  } else if (!thinking.is_null()) {
    throw ChatError("thinking must be a bool or an object");
  }
  if (!enabled) options.mode = ThinkingMode::kChat;
}

}  // namespace magnetar::chat
