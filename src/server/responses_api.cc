#include "server/responses_api.h"

#include <map>

#include "chat/chat_error.h"
#include "chat/openai_request.h"
#include "server/json_text.h"

namespace magnetar::server {
namespace {

const char* const kInputParam = "input";

std::string item_text(const Json& content, const char* what) {
  if (content.is_null()) return "";
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array())
    throw bad_request(std::string(what) + " must be a string or an array", kInputParam);
  std::string text;
  for (const Json& part : content) {
    if (part.is_string()) {
      text += part.get<std::string>();
      continue;
    }
    std::string type = part.is_object() ? part.value("type", "") : "";
    if (type != "input_text" && type != "output_text" && type != "text" && type != "summary_text" &&
        type != "reasoning_text") {
      throw bad_request(
          std::string(what) + " part of type '" + type + "' is not supported (text only)",
          kInputParam);
    }
    const Json& t = part.contains("text") ? part["text"] : Json();
    if (!t.is_null() && !t.is_string())
      throw bad_request("text parts need a string text", kInputParam);
    if (t.is_string()) text += t.get<std::string>();
  }
  return text;
}

std::string required_string(const Json& item, const char* name) {
  auto it = item.find(name);
  if (it == item.end() || !it->is_string()) {
    throw bad_request(std::string("input item of type '") + item.value("type", "") +
                          "' needs a string '" + name + "'",
                      kInputParam);
  }
  return it->get<std::string>();
}

// Builds the chat message list from input items.
class InputConverter {
 public:
  Json messages = Json::array();

  void add(const Json& item) {
    if (!item.is_object()) throw bad_request("input items must be objects", kInputParam);
    std::string type = item.value("type", "message");
    if (type == "message") {
      std::string role = item.value("role", "user");
      if (role != "user" && role != "assistant" && role != "system" && role != "developer") {
        throw bad_request("unknown message role '" + role + "'", kInputParam);
      }
      std::string text = item_text(item.value("content", Json()), "message content");
      if (role == "assistant") {
        Json m = {{"role", "assistant"}, {"content", text}};
        take_reasoning(m);
        messages.push_back(std::move(m));
        assistant_open_ = true;
        return;
      }
      flush_reasoning();
      messages.push_back({{"role", role}, {"content", text}});
      assistant_open_ = false;
    } else if (type == "reasoning") {
      flush_reasoning();
      std::string text = item_text(item.value("content", Json()), "reasoning content");
      if (text.empty()) {
        for (const Json& s : item.value("summary", Json::array())) {
          if (!text.empty()) text += "\n";
          text += item_text(Json::array({s}), "reasoning summary");
        }
      }
      reasoning_ = text;
      assistant_open_ = false;  // calls after a reasoning item start a new turn that carries it
    } else if (type == "function_call" || type == "custom_tool_call") {
      Json call = {{"id", item.contains("call_id") ? required_string(item, "call_id")
                                                   : required_string(item, "id")},
                   {"type", "function"},
                   {"function",
                    {{"name", required_string(item, "name")},
                     {"arguments", type == "function_call" ? required_string(item, "arguments")
                                                           : required_string(item, "input")}}}};
      if (!assistant_open_) {
        Json m = {{"role", "assistant"}, {"content", ""}};
        take_reasoning(m);
        messages.push_back(std::move(m));
        assistant_open_ = true;
      }
      Json& last = messages.back();
      if (!last.contains("tool_calls")) last["tool_calls"] = Json::array();
      last["tool_calls"].push_back(std::move(call));
    } else if (type == "function_call_output" || type == "custom_tool_call_output") {
      flush_reasoning();
      const Json& output = item.contains("output") ? item["output"] : Json();
      std::string text = output.is_string() || output.is_array() || output.is_null()
                             ? item_text(output, "tool output")
                             : json_text(output);
      messages.push_back({{"role", "tool"},
                          {"tool_call_id", required_string(item, "call_id")},
                          {"content", text}});
      assistant_open_ = false;
    } else {
      throw bad_request("input item type '" + type + "' is not supported", kInputParam);
    }
  }

  void finish() { flush_reasoning(); }

 private:
  void take_reasoning(Json& m) {
    if (!reasoning_) return;
    m["reasoning_content"] = *reasoning_;
    reasoning_.reset();
  }
  // A reasoning item not followed by an assistant turn stands alone (as in ds4).
  void flush_reasoning() {
    if (!reasoning_) return;
    messages.push_back(
        {{"role", "assistant"}, {"content", ""}, {"reasoning_content", *reasoning_}});
    reasoning_.reset();
    assistant_open_ = false;
  }

  std::optional<std::string> reasoning_;
  bool assistant_open_ = false;  // the last item was an assistant turn that calls may join
};

Json responses_usage(const Usage& u) {
  return {{"input_tokens", u.prompt_tokens},
          {"input_tokens_details", {{"cached_tokens", u.cached_tokens}}},
          {"output_tokens", u.completion_tokens},
          {"output_tokens_details", {{"reasoning_tokens", u.reasoning_tokens}}},
          {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

class ResponseResponder final : public Responder {
 public:
  ResponseResponder(std::string model, bool summary, Json echo)
      : model_(std::move(model)), summary_(summary), echo_(std::move(echo)) {}

  std::string stream_open() override {
    Json r = response_object("in_progress", Json::array(), nullptr);
    std::string out = event("response.created", {{"response", r}});
    return out + event("response.in_progress", {{"response", r}});
  }

  std::string stream_event(const Event& e) override {
    switch (e.kind) {
      case Event::Kind::kReasoning: {
        std::string out;
        if (open_ != Open::kReasoning) {
          out += close_open();
          open_ = Open::kReasoning;
          reasoning_index_ = next_index_++;
          Json item = {{"id", reasoning_id_},
                       {"type", "reasoning"},
                       {"summary", Json::array()},
                       {"content", Json::array()}};
          out += event("response.output_item.added",
                       {{"output_index", reasoning_index_}, {"item", item}});
          out += event("response.content_part.added",
                       {{"item_id", reasoning_id_},
                        {"output_index", reasoning_index_},
                        {"content_index", 0},
                        {"part", {{"type", "reasoning_text"}, {"text", ""}}}});
        }
        reasoning_ += e.text;
        return out + event("response.reasoning_text.delta", {{"item_id", reasoning_id_},
                                                             {"output_index", reasoning_index_},
                                                             {"content_index", 0},
                                                             {"delta", e.text}});
      }
      case Event::Kind::kContent: {
        std::string out;
        if (open_ != Open::kMessage) {
          out += close_open();
          open_ = Open::kMessage;
          message_index_ = next_index_++;
          out += event("response.output_item.added", {{"output_index", message_index_},
                                                      {"item",
                                                       {{"id", message_id_},
                                                        {"type", "message"},
                                                        {"status", "in_progress"},
                                                        {"role", "assistant"},
                                                        {"content", Json::array()}}}});
          out += event("response.content_part.added", {{"item_id", message_id_},
                                                       {"output_index", message_index_},
                                                       {"content_index", 0},
                                                       {"part", output_text("")}});
        }
        content_ += e.text;
        return out + event("response.output_text.delta", {{"item_id", message_id_},
                                                          {"output_index", message_index_},
                                                          {"content_index", 0},
                                                          {"delta", e.text},
                                                          {"logprobs", Json::array()}});
      }
      case Event::Kind::kToolCallBegin: {
        std::string out = close_open();
        open_ = Open::kCall;
        Call& c = calls_[e.index];
        c.item_id = random_id("fc_", 24);
        c.call_id = e.id;
        c.name = e.text;
        c.output_index = next_index_++;
        open_call_ = e.index;
        return out + event("response.output_item.added", {{"output_index", c.output_index},
                                                          {"item", call_item(c, "in_progress")}});
      }
      case Event::Kind::kToolCallArguments: {
        Call& c = calls_[e.index];
        c.arguments += e.text;
        return event("response.function_call_arguments.delta",
                     {{"item_id", c.item_id}, {"output_index", c.output_index}, {"delta", e.text}});
      }
      case Event::Kind::kToolCallEnd:
        return close_open();
      default:
        return "";
    }
  }

  std::string stream_close(const GenerationResult& r) override {
    std::string out = close_open();
    const char* name = r.finish == FinishReason::kError    ? "response.failed"
                       : r.finish == FinishReason::kLength ? "response.incomplete"
                                                           : "response.completed";
    return out + event(name, {{"response", final_response(r)}});
  }

  std::string body(const GenerationResult& r) override { return json_text(final_response(r)); }

 private:
  enum class Open { kNone, kReasoning, kMessage, kCall };
  struct Call {
    std::string item_id, call_id, name, arguments;
    int output_index = 0;
  };

  static Json output_text(const std::string& text) {
    return {{"type", "output_text"}, {"text", text}, {"annotations", Json::array()}};
  }

  Json reasoning_item(const std::string& text) const {
    Json summary = Json::array();
    if (summary_) summary.push_back({{"type", "summary_text"}, {"text", text}});
    return {{"id", reasoning_id_},
            {"type", "reasoning"},
            {"summary", summary},
            {"content", {{{"type", "reasoning_text"}, {"text", text}}}}};
  }

  Json message_item(const std::string& text, const char* status) const {
    return {{"id", message_id_},
            {"type", "message"},
            {"status", status},
            {"role", "assistant"},
            {"content", {output_text(text)}}};
  }

  static Json call_item(const Call& c, const char* status) {
    return {{"id", c.item_id},      {"type", "function_call"}, {"status", status},
            {"call_id", c.call_id}, {"name", c.name},          {"arguments", c.arguments}};
  }

  std::string close_open() {
    std::string out;
    switch (open_) {
      case Open::kReasoning:
        out += event("response.reasoning_text.done", {{"item_id", reasoning_id_},
                                                      {"output_index", reasoning_index_},
                                                      {"content_index", 0},
                                                      {"text", reasoning_}});
        out += event("response.content_part.done",
                     {{"item_id", reasoning_id_},
                      {"output_index", reasoning_index_},
                      {"content_index", 0},
                      {"part", {{"type", "reasoning_text"}, {"text", reasoning_}}}});
        out += event("response.output_item.done",
                     {{"output_index", reasoning_index_}, {"item", reasoning_item(reasoning_)}});
        break;
      case Open::kMessage:
        out += event("response.output_text.done", {{"item_id", message_id_},
                                                   {"output_index", message_index_},
                                                   {"content_index", 0},
                                                   {"text", content_},
                                                   {"logprobs", Json::array()}});
        out += event("response.content_part.done", {{"item_id", message_id_},
                                                    {"output_index", message_index_},
                                                    {"content_index", 0},
                                                    {"part", output_text(content_)}});
        out += event("response.output_item.done", {{"output_index", message_index_},
                                                   {"item", message_item(content_, "completed")}});
        break;
      case Open::kCall: {
        const Call& c = calls_[open_call_];
        out += event("response.function_call_arguments.done", {{"item_id", c.item_id},
                                                               {"output_index", c.output_index},
                                                               {"name", c.name},
                                                               {"arguments", c.arguments}});
        out += event("response.output_item.done",
                     {{"output_index", c.output_index}, {"item", call_item(c, "completed")}});
        break;
      }
      case Open::kNone:
        break;
    }
    open_ = Open::kNone;
    return out;
  }

  // The response object; the items reuse the ids the stream announced.
  Json final_response(const GenerationResult& r) {
    const char* item_status =
        r.finish == FinishReason::kStop || r.finish == FinishReason::kToolCalls ? "completed"
                                                                                : "incomplete";
    Json output = Json::array();
    if (!r.reasoning.empty()) output.push_back(reasoning_item(r.reasoning));
    if (!r.content.empty()) output.push_back(message_item(r.content, item_status));
    for (size_t i = 0; i < r.tool_calls.size(); ++i) {
      Call c = calls_.count(static_cast<int>(i)) ? calls_[static_cast<int>(i)] : Call{};
      if (c.item_id.empty()) c.item_id = random_id("fc_", 24);
      c.call_id = r.tool_calls[i].id;
      c.name = r.tool_calls[i].name;
      c.arguments = r.tool_calls[i].arguments;
      output.push_back(call_item(c, item_status));
    }
    Json status = "completed", error = nullptr, incomplete = nullptr;
    if (r.finish == FinishReason::kLength) {
      status = "incomplete";
      incomplete = {{"reason", "max_output_tokens"}};
    } else if (r.finish == FinishReason::kError || r.finish == FinishReason::kCancelled) {
      status = "failed";
      error = {{"code", "server_error"},
               {"message", r.error.empty() ? "generation failed" : r.error}};
    }
    Json out = response_object(status, std::move(output), responses_usage(r.usage));
    out["error"] = std::move(error);
    out["incomplete_details"] = std::move(incomplete);
    return out;
  }

  Json response_object(Json status, Json output, Json usage) const {
    Json r = {{"id", id_},
              {"object", "response"},
              {"created_at", created_},
              {"status", std::move(status)},
              {"error", nullptr},
              {"incomplete_details", nullptr},
              {"model", model_},
              {"output", std::move(output)},
              {"parallel_tool_calls", true},
              {"usage", std::move(usage)}};
    for (const auto& [key, value] : echo_.items()) r[key] = value;
    return r;
  }

  std::string event(const char* type, Json fields) {
    Json e = {{"type", type}, {"sequence_number", sequence_++}};
    for (auto& [key, value] : fields.items()) e[key] = std::move(value);
    return sse(e, type);
  }

  std::string model_;
  bool summary_;
  Json echo_;  // request fields the response object repeats (instructions, tools, ...)
  std::string id_ = random_id("resp_", 24);
  int64_t created_ = unix_time();
  std::string reasoning_id_ = random_id("rs_", 24);
  std::string message_id_ = random_id("msg_", 24);
  int sequence_ = 0;
  int next_index_ = 0;
  Open open_ = Open::kNone;
  int reasoning_index_ = 0, message_index_ = 0, open_call_ = -1;
  std::string reasoning_, content_;
  std::map<int, Call> calls_;
};

}  // namespace

Json responses_to_chat(const Json& request) {
  for (const char* field : {"previous_response_id", "conversation"}) {
    auto it = request.find(field);
    if (it != request.end() && !it->is_null()) {
      throw bad_request(
          std::string(field) + " is not supported (no state is stored): send the full input",
          field);
    }
  }
  if (bool_field(request, "background").value_or(false)) {
    throw bad_request("background responses are not supported", "background");
  }
  Json chat = {{"messages", Json::array()}};
  InputConverter input;
  if (std::optional<std::string> instructions = string_field(request, "instructions")) {
    input.messages.push_back({{"role", "system"}, {"content", *instructions}});
  }
  auto it = request.find("input");
  if (it == request.end() || it->is_null()) throw bad_request("missing input", kInputParam);
  if (it->is_string()) {
    input.messages.push_back({{"role", "user"}, {"content", *it}});
  } else if (it->is_array()) {
    for (const Json& item : *it) input.add(item);
  } else {
    throw bad_request("input must be a string or an array of items", kInputParam);
  }
  input.finish();
  chat["messages"] = std::move(input.messages);
  auto tools = request.find("tools");
  if (tools != request.end() && !tools->is_null()) {
    if (!tools->is_array()) throw bad_request("tools must be an array", "tools");
    Json converted = Json::array();
    for (const Json& t : *tools) {
      std::string type = t.is_object() ? t.value("type", "") : "";
      if (type != "function") {
        throw bad_request("tool type '" + type + "' is not supported (function tools only)",
                          "tools");
      }
      Json fn = {{"name", required_string(t, "name")}};
      if (t.contains("description")) fn["description"] = t["description"];
      if (t.contains("parameters")) fn["parameters"] = t["parameters"];
      converted.push_back({{"type", "function"}, {"function", std::move(fn)}});
    }
    chat["tools"] = std::move(converted);
  }
  auto choice = request.find("tool_choice");
  if (choice != request.end() && !choice->is_null()) {
    if (!choice->is_string() || (*choice != "auto" && *choice != "none")) {
      throw bad_request(
          "tool_choice must be \"auto\" or \"none\" (forced tool choice is not "
          "supported)",
          "tool_choice");
    }
    chat["tool_choice"] = *choice;
  }
  auto reasoning = request.find("reasoning");
  if (reasoning != request.end() && !reasoning->is_null()) {
    if (!reasoning->is_object()) throw bad_request("reasoning must be an object", "reasoning");
    if (reasoning->contains("effort") && !(*reasoning)["effort"].is_null()) {
      chat["reasoning_effort"] = (*reasoning)["effort"];
    }
  }
  auto text = request.find("text");
  if (text != request.end() && text->is_object() && text->contains("format")) {
    const Json& format = (*text)["format"];
    if (format.is_object() && format.value("type", "text") != "text") {
      chat["response_format"] = format;
    }
  }
  return chat;
}

Prepared prepare_response(const Json& request, const ApiContext& ctx) {
  ModelChoice model = resolve_model(ctx, request);
  Json chat_json = responses_to_chat(request);
  bool summary = false;
  auto reasoning = request.find("reasoning");
  if (reasoning != request.end() && reasoning->is_object()) {
    std::optional<std::string> s = string_field(*reasoning, "summary");
    summary = s && *s != "none";
  }
  chat::ChatRequest chat;
  try {
    chat = chat::chat_request_from_openai(chat_json);
  } catch (const chat::ChatError& e) {
    throw bad_request(e.what(), kInputParam);
  }
  settle_thinking(ctx, model, chat_json.contains("reasoning_effort"), chat.options);
  Prepared p;
  p.job = conversation_job(ctx, chat, kInputParam);
  p.job.endpoint = Endpoint::kResponses;
  p.job.max_tokens = max_tokens(ctx, request, {"max_output_tokens", "max_tokens"});
  p.job.sampling = sampling_params(request, /*extended=*/false);
  p.job.tool_id_prefix = "call_";
  p.stream = bool_field(request, "stream").value_or(false);
  Json echo = Json::object();
  for (const char* field : {"instructions", "tools", "tool_choice", "temperature", "top_p",
                            "max_output_tokens", "reasoning", "metadata"}) {
    if (request.contains(field)) echo[field] = request[field];
  }
  p.responder = std::make_unique<ResponseResponder>(model.name, summary, std::move(echo));
  return p;
}

}  // namespace magnetar::server
