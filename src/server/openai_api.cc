#include "server/openai_api.h"

#include "chat/chat_error.h"
#include "chat/openai_request.h"
#include "chat/template_strings.h"
#include "engine/prompt_tokens.h"
#include "server/generation.h"
#include "server/json_text.h"

namespace magnetar::server {
namespace {

constexpr size_t kMaxStopStrings = 16;

void refuse_unsupported_openai_fields(const Json& request) {
  refuse_unsupported(request, "n", {nullptr, 1}, "one choice per request");
  refuse_unsupported(request, "logprobs", {nullptr, false}, "logprobs are not reported");
  refuse_unsupported(request, "top_logprobs", {nullptr, 0}, "logprobs are not reported");
  refuse_unsupported(request, "presence_penalty", {nullptr, 0}, "no penalties");
  refuse_unsupported(request, "frequency_penalty", {nullptr, 0}, "no penalties");
  refuse_unsupported(request, "logit_bias", {nullptr, Json::object()}, "no logit bias");
}

bool include_usage(const Json& request) {
  auto it = request.find("stream_options");
  if (it == request.end() || it->is_null()) return false;
  if (!it->is_object()) throw bad_request("stream_options must be an object", "stream_options");
  return bool_field(*it, "include_usage").value_or(false);
}

Json chunk_common(const std::string& id, const char* object, int64_t created,
                  const std::string& model) {
  return {{"id", id}, {"object", object}, {"created", created}, {"model", model}};
}

class ChatResponder final : public Responder {
 public:
  ChatResponder(std::string model, bool usage)
      : model_(std::move(model)), usage_(usage), id_(random_id("chatcmpl-", 24)) {}

  std::string stream_open() override { return chunk({{"role", "assistant"}, {"content", ""}}); }

  std::string stream_event(const Event& e) override {
    switch (e.kind) {
      case Event::Kind::kReasoning:
        return chunk({{"reasoning_content", e.text}});
      case Event::Kind::kContent:
        return chunk({{"content", e.text}});
      case Event::Kind::kToolCallBegin:
        return chunk({{"tool_calls",
                       {{{"index", e.index},
                         {"id", e.id},
                         {"type", "function"},
                         {"function", {{"name", e.text}, {"arguments", ""}}}}}}});
      case Event::Kind::kToolCallArguments:
        return chunk(
            {{"tool_calls", {{{"index", e.index}, {"function", {{"arguments", e.text}}}}}}});
      default:
        return "";
    }
  }

  std::string stream_close(const GenerationResult& r) override {
    if (r.finish == FinishReason::kError) {
      return sse(stream_error_object(ApiFlavor::kOpenAI, r.error));
    }
    std::string out = chunk(Json::object(), openai_finish_reason(r.finish));
    if (usage_) {
      Json u = chunk_common(id_, "chat.completion.chunk", created_, model_);
      u["choices"] = Json::array();
      u["usage"] = openai_usage(r.usage);
      out += sse(u);
    }
    return out + "data: [DONE]\n\n";
  }

  std::string body(const GenerationResult& r) override {
    Json message = {{"role", "assistant"}, {"content", r.content}};
    if (!r.reasoning.empty()) message["reasoning_content"] = r.reasoning;
    if (!r.tool_calls.empty()) {
      Json calls = Json::array();
      for (const ToolCallResult& c : r.tool_calls) {
        calls.push_back({{"id", c.id},
                         {"type", "function"},
                         {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
      }
      message["tool_calls"] = std::move(calls);
    }
    Json out = chunk_common(id_, "chat.completion", created_, model_);
    out["choices"] = {{{"index", 0},
                       {"message", std::move(message)},
                       {"logprobs", nullptr},
                       {"finish_reason", openai_finish_reason(r.finish)}}};
    out["usage"] = openai_usage(r.usage);
    return json_text(out);
  }

 private:
  std::string chunk(Json delta, Json finish = nullptr) {
    Json c = chunk_common(id_, "chat.completion.chunk", created_, model_);
    c["choices"] = {{{"index", 0},
                     {"delta", std::move(delta)},
                     {"logprobs", nullptr},
                     {"finish_reason", std::move(finish)}}};
    return sse(c);
  }

  std::string model_;
  bool usage_;
  std::string id_;
  int64_t created_ = unix_time();
};

class CompletionResponder final : public Responder {
 public:
  CompletionResponder(std::string model, bool usage)
      : model_(std::move(model)), usage_(usage), id_(random_id("cmpl-", 24)) {}

  std::string stream_open() override { return ""; }

  std::string stream_event(const Event& e) override {
    if (e.kind != Event::Kind::kContent) return "";
    return chunk(e.text, nullptr);
  }

  std::string stream_close(const GenerationResult& r) override {
    if (r.finish == FinishReason::kError) {
      return sse(stream_error_object(ApiFlavor::kOpenAI, r.error));
    }
    std::string out = chunk("", openai_finish_reason(r.finish));
    if (usage_) {
      Json u = chunk_common(id_, "text_completion", created_, model_);
      u["choices"] = Json::array();
      u["usage"] = openai_usage(r.usage);
      out += sse(u);
    }
    return out + "data: [DONE]\n\n";
  }

  std::string body(const GenerationResult& r) override {
    Json out = chunk_common(id_, "text_completion", created_, model_);
    out["choices"] = {{{"text", r.text},
                       {"index", 0},
                       {"logprobs", nullptr},
                       {"finish_reason", openai_finish_reason(r.finish)}}};
    out["usage"] = openai_usage(r.usage);
    return json_text(out);
  }

 private:
  std::string chunk(const std::string& text, Json finish) {
    Json c = chunk_common(id_, "text_completion", created_, model_);
    c["choices"] = {{{"text", text},
                     {"index", 0},
                     {"logprobs", nullptr},
                     {"finish_reason", std::move(finish)}}};
    return sse(c);
  }

  std::string model_;
  bool usage_;
  std::string id_;
  int64_t created_ = unix_time();
};

}  // namespace

Json openai_usage(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", u.cached_tokens}}},
          {"completion_tokens_details", {{"reasoning_tokens", u.reasoning_tokens}}}};
}

Prepared prepare_chat_completion(const Json& request, const ApiContext& ctx) {
  ModelChoice model = resolve_model(ctx, request);
  refuse_unsupported_openai_fields(request);
  auto choice = request.find("tool_choice");
  if (choice != request.end() && !choice->is_null()) {
    if (choice->is_object()) {
      throw bad_request("tool_choice naming a function is not supported (use auto or none)",
                        "tool_choice");
    }
    if (!choice->is_string() || (*choice != "auto" && *choice != "none")) {
      throw bad_request("tool_choice must be \"auto\" or \"none\"", "tool_choice");
    }
  }
  chat::ChatRequest chat;
  try {
    chat = chat::chat_request_from_openai(request);
  } catch (const chat::ChatError& e) {
    throw bad_request(e.what(), "messages");
  }
  std::optional<bool> think = bool_field(request, "think");
  if (think) chat.options.mode = *think ? chat::ThinkingMode::kThinking : chat::ThinkingMode::kChat;
  auto thinking = request.find("thinking");
  const bool explicit_choice =
      think.has_value() || (thinking != request.end() && !thinking->is_null());
  settle_thinking(ctx, model, explicit_choice, chat.options);

  Prepared p;
  p.job = conversation_job(ctx, chat, "messages");
  p.job.endpoint = Endpoint::kChatCompletions;
  p.job.max_tokens = max_tokens(ctx, request, {"max_completion_tokens", "max_tokens"});
  p.job.sampling = sampling_params(request, /*extended=*/true);
  p.job.stop = stop_strings_field(request, "stop", kMaxStopStrings);
  p.job.tool_id_prefix = "call_";
  p.stream = bool_field(request, "stream").value_or(false);
  p.responder = std::make_unique<ChatResponder>(model.name, include_usage(request));
  return p;
}

Prepared prepare_completion(const Json& request, const ApiContext& ctx) {
  ModelChoice model = resolve_model(ctx, request);
  refuse_unsupported_openai_fields(request);
  refuse_unsupported(request, "echo", {nullptr, false}, "the prompt is not echoed");
  refuse_unsupported(request, "suffix", {nullptr, ""}, "no insertion mode");
  refuse_unsupported(request, "best_of", {nullptr, 1}, "one choice per request");
  auto prompt = request.find("prompt");
  if (prompt == request.end() || prompt->is_null()) throw bad_request("missing prompt", "prompt");
  Json value = *prompt;
  // A one-element batch is the prompt itself; larger batches are n > 1 in disguise.
  if (value.is_array() && value.size() == 1 && (value[0].is_string() || value[0].is_array())) {
    value = value[0];
  }
  Prepared p;
  JobRequest& job = p.job;
  const tokenizer::Tokenizer& tok = *ctx.tokenizer;
  if (value.is_string()) {
    const std::string& text = value.get_ref<const std::string&>();
    if (!text.starts_with(chat::kBos)) job.prompt.add_control(chat::kBos);
    job.prompt.add_template(text);
    job.prompt_tokens = engine::prompt_tokens(tok, job.prompt);
  } else if (value.is_array() && !value.empty()) {
    for (const Json& id : value) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 ||
          id.get<int64_t>() >= tok.vocab_size()) {
        throw bad_request("prompt must be a string or an array of token ids below " +
                              std::to_string(tok.vocab_size()),
                          "prompt");
      }
      job.prompt_tokens.push_back(id.get<int32_t>());
    }
    job.prompt.add_template(tok.decode(job.prompt_tokens));
  } else {
    throw bad_request("prompt must be a string or an array of token ids (one prompt per request)",
                      "prompt");
  }
  job.prompt_text = job.prompt.text();
  const int64_t n = static_cast<int64_t>(job.prompt_tokens.size());
  if (n >= ctx.context) throw context_error(n, ctx.context, "prompt");
  job.endpoint = Endpoint::kCompletions;
  job.raw = true;
  job.mode = chat::ThinkingMode::kChat;
  job.max_tokens = max_tokens(ctx, request, {"max_tokens"});
  job.sampling = sampling_params(request, /*extended=*/true);
  job.stop = stop_strings_field(request, "stop", kMaxStopStrings);
  if (ctx.forced != nullptr) job.forced_tokens = ctx.forced->match(job.prompt_text);
  p.stream = bool_field(request, "stream").value_or(false);
  p.responder = std::make_unique<CompletionResponder>(model.name, include_usage(request));
  return p;
}

}  // namespace magnetar::server
