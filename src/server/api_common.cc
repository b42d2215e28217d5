#include "server/api_common.h"

#include <openssl/rand.h>

#include <algorithm>
#include <chrono>
#include <limits>

#include "chat/chat_error.h"
#include "engine/prompt_tokens.h"
#include "server/exact_replay.h"
#include "server/json_text.h"

namespace magnetar::server {
namespace {

// ds4 uses Think-Max only with a context of at least this many tokens (server-api.md §6).
constexpr int64_t kThinkMaxContext = 393216;

}  // namespace

ModelChoice resolve_model(const ApiContext& ctx, const Json& request) {
  std::optional<std::string> name = string_field(request, "model");
  if (!name || *name == ctx.models.id) return {ctx.models.id, std::nullopt};
  if (*name == "deepseek-chat") return {*name, false};
  if (*name == "deepseek-reasoner") return {*name, true};
  const std::vector<std::string>& a = ctx.models.aliases;
  if (std::find(a.begin(), a.end(), *name) != a.end()) return {*name, std::nullopt};
  ApiError e(404,
             "the model '" + *name + "' does not exist (this server serves '" + ctx.models.id +
                 "'; see GET /v1/models)",
             "model_not_found", "model");
  throw e;
}

engine::SamplingParams sampling_params(const Json& request, bool extended) {
  engine::SamplingParams p;
  p.temperature = static_cast<float>(number_field(request, "temperature", 0, 2).value_or(1.0));
  double top_p = number_field(request, "top_p", 0, 1).value_or(1.0);
  // top_p 0 means "only the most likely token": the sampler wants a positive value, and the
  // smallest one keeps exactly the first candidate.
  p.top_p = top_p > 0 ? static_cast<float>(top_p) : std::numeric_limits<float>::min();
  p.min_p = 0.05f;
  if (extended) {
    p.top_k = static_cast<int>(int_field(request, "top_k", 0, 1 << 30).value_or(0));
    p.min_p = static_cast<float>(number_field(request, "min_p", 0, 1).value_or(0.05));
    std::optional<int64_t> seed =
        int_field(request, "seed", std::numeric_limits<int64_t>::min(), INT64_MAX);
    if (seed && *seed != 0) p.seed = static_cast<uint64_t>(*seed);
  }
  return p;
}

int64_t max_tokens(const ApiContext& ctx, const Json& request,
                   std::initializer_list<const char*> names) {
  for (const char* name : names) {
    std::optional<int64_t> n = int_field(request, name, 0, INT64_MAX);
    if (n) return std::min(*n, ctx.max_tokens_limit);
  }
  return std::min(ctx.default_max_tokens, ctx.max_tokens_limit);
}

void settle_thinking(const ApiContext& ctx, const ModelChoice& model, bool explicit_choice,
                     chat::RenderOptions& options) {
  if (!explicit_choice && model.thinking) {
    options.mode = *model.thinking ? chat::ThinkingMode::kThinking : chat::ThinkingMode::kChat;
  }
  if (options.effort == chat::ReasoningEffort::kMax && ctx.context < kThinkMaxContext) {
    options.effort = chat::ReasoningEffort::kHigh;
  }
}

ApiError context_error(int64_t prompt_tokens, int64_t context, const std::string& param) {
  ApiError e(400,
             "the prompt has " + std::to_string(prompt_tokens) +
                 " tokens, but the context size is " + std::to_string(context) + " tokens",
             "context_length_exceeded", param);
  e.extra()["n_prompt_tokens"] = prompt_tokens;
  e.extra()["n_ctx"] = context;
  return e;
}

JobRequest conversation_job(const ApiContext& ctx, const chat::ChatRequest& request,
                            const std::string& param, bool check_context) {
  if (ctx.replay != nullptr && ctx.store != nullptr) {
    std::vector<std::string> unknown;
    for (const chat::Message& m : request.messages) {
      for (const chat::ToolCall& c : m.tool_calls) {
        if (!c.id.empty() && !ctx.replay->contains(c.id)) unknown.push_back(c.id);
      }
    }
    if (!unknown.empty()) ctx.store->recall_tool_ids(unknown);
  }
  JobRequest job;
  try {
    job.prompt = render_with_replay(request.messages, request.options, ctx.replay).prompt;
  } catch (const chat::ChatError& e) {
    throw bad_request(e.what(), param);
  }
  job.prompt_text = job.prompt.text();
  job.prompt_tokens = engine::prompt_tokens(*ctx.tokenizer, job.prompt);
  const int64_t n = static_cast<int64_t>(job.prompt_tokens.size());
  if (check_context && n >= ctx.context) throw context_error(n, ctx.context, param);
  job.mode = request.options.mode;
  job.tools_active = std::any_of(request.messages.begin(), request.messages.end(),
                                 [](const chat::Message& m) { return !m.tools.empty(); });
  if (ctx.forced != nullptr) job.forced_tokens = ctx.forced->match(job.prompt_text);
  return job;
}

std::string random_id(const std::string& prefix, int hex_digits) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::vector<unsigned char> bytes((hex_digits + 1) / 2);
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
    throw std::runtime_error("the random generator failed");
  }
  std::string id = prefix;
  for (int i = 0; i < hex_digits; ++i) {
    unsigned char b = bytes[i / 2];
    id += kHex[i % 2 == 0 ? b >> 4 : b & 15];
  }
  return id;
}

int64_t unix_time() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string sse(const Json& data, const char* event_name) {
  std::string out;
  if (event_name != nullptr) {
    out += "event: ";
    out += event_name;
    out += "\n";
  }
  out += "data: ";
  out += json_text(data);
  out += "\n\n";
  return out;
}

}  // namespace magnetar::server
