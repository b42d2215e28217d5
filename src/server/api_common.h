// What the four generating APIs share: the context a request is prepared in, the model names,
// sampling and token limits, turning a conversation into a Job, and the interface through which
// the HTTP layer writes each API's responses.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "chat/chat_request.h"
#include "kvcache/tool_id_map.h"
#include "server/api_error.h"
#include "server/forced_completions.h"
#include "server/job.h"
#include "server/request_fields.h"
#include "server/state_store.h"
#include "tokenizer/tokenizer.h"

namespace magnetar::server {

// The model names clients may send. `deepseek-chat` and `deepseek-reasoner` (DeepSeek's API
// names) select thinking off / on when the request does not choose (server-api.md §6); `aliases`
// (--model-alias) are accepted as the served model, e.g. names a client insists on sending.
// Any other name is refused with 404 model_not_found (ds4 accepts anything, §4.1).
struct ModelNames {
  std::string id;
  std::vector<std::string> aliases;
};

struct ApiContext {
  const tokenizer::Tokenizer* tokenizer = nullptr;
  int64_t context = 0;             // the engine's context (tokens)
  int64_t default_max_tokens = 0;  // when a request gives no limit
  int64_t max_tokens_limit = 0;    // larger requested limits are lowered to this
  ModelNames models;
  kvcache::ToolIdMap* replay = nullptr;       // null: exact replay off
  StateStore* store = nullptr;                // for recall_tool_ids
  const ForcedCompletions* forced = nullptr;  // TEST-ONLY, null in normal use
};

// The model a request names (absent: the served id): the name to echo back and, for the
// DeepSeek API names, the thinking default. Throws 404 for an unknown name, 400 for a non-string.
struct ModelChoice {
  std::string name;
  std::optional<bool> thinking;
};
ModelChoice resolve_model(const ApiContext& ctx, const Json& request);

// Sampling defaults (server-api.md §5): temperature 1, top_p 1, min_p 0.05, top_k 0, unseeded.
// Unlike ds4 (§7.1 step 2) the client's values are honoured in thinking mode too. Reads
// temperature, top_p, and where `extended`, top_k, min_p and seed.
engine::SamplingParams sampling_params(const Json& request, bool extended);

// The generation limit: the first present field of `names`, else the server default, lowered to
// the server's limit.
int64_t max_tokens(const ApiContext& ctx, const Json& request,
                   std::initializer_list<const char*> names);

// Applies the model's thinking default (when the request made no explicit choice) and ds4's
// Think-Max gate (max needs a context of 393216 tokens; lower contexts use high).
void settle_thinking(const ApiContext& ctx, const ModelChoice& model, bool explicit_choice,
                     chat::RenderOptions& options);

// Renders a conversation (with exact replay of known tool calls), tokenises it and (unless
// `check_context` is false) checks it fits the context. `param` names the request field that
// holds the conversation, for errors. The returned job still needs its generation fields.
JobRequest conversation_job(const ApiContext& ctx, const chat::ChatRequest& request,
                            const std::string& param, bool check_context = true);

// The context-length error (400, code context_length_exceeded) with ds4's figures.
ApiError context_error(int64_t prompt_tokens, int64_t context, const std::string& param);

// "prefix" + `hex_digits` random lowercase hex digits (OpenSSL CSPRNG).
std::string random_id(const std::string& prefix, int hex_digits);
int64_t unix_time();

// One response of one API: how its events are written to the client.
class Responder {
 public:
  virtual ~Responder() = default;
  // SSE text sent as soon as the stream opens (before the prompt is admitted).
  virtual std::string stream_open() = 0;
  // SSE text for one event (kStarted and the deltas).
  virtual std::string stream_event(const Event& event) = 0;
  // SSE text that ends the stream.
  virtual std::string stream_close(const GenerationResult& result) = 0;
  // A keepalive while nothing else is sent (an SSE comment, or the API's own ping).
  virtual std::string stream_keepalive() { return ": keepalive\n\n"; }
  // The non-streaming JSON body.
  virtual std::string body(const GenerationResult& result) = 0;
};

// A parsed request, ready for the scheduler.
struct Prepared {
  JobRequest job;
  bool stream = false;
  std::unique_ptr<Responder> responder;
};

// One SSE event: `event: NAME` (when given) and `data: JSON`.
std::string sse(const Json& data, const char* event_name = nullptr);

}  // namespace magnetar::server
