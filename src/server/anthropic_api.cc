#include "server/anthropic_api.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "chat/anthropic_request.h"
#include "chat/chat_error.h"
#include "server/json_text.h"

namespace magnetar::server {
namespace {

constexpr size_t kMaxStopSequences = 16;

// HMAC-SHA256 of the thinking text under a key drawn once per process, hex-encoded.
std::string thinking_signature(const std::string& thinking) {
  static const std::vector<unsigned char> key = [] {
    std::vector<unsigned char> k(32);
    if (RAND_bytes(k.data(), static_cast<int>(k.size())) != 1) {
      throw std::runtime_error("the random generator failed");
    }
    return k;
  }();
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(thinking.data()), thinking.size(), mac, &length);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < length; ++i) {
    out += kHex[mac[i] >> 4];
    out += kHex[mac[i] & 15];
  }
  return out;
}

Json anthropic_usage(const Usage& u) {
  return {{"input_tokens", u.prompt_tokens - u.cached_tokens},
          {"cache_creation_input_tokens", 0},
          {"cache_read_input_tokens", u.cached_tokens},
          {"output_tokens", u.completion_tokens}};
}

const char* stop_reason(const GenerationResult& r) {
  switch (r.finish) {
    case FinishReason::kLength:
      return "max_tokens";
    case FinishReason::kToolCalls:
      return "tool_use";
    default:
      return r.stop_sequence ? "stop_sequence" : "end_turn";
  }
}

Json stop_sequence(const GenerationResult& r) {
  return r.stop_sequence ? Json(*r.stop_sequence) : Json();
}

// A tool call's arguments text as the object Anthropic's `input` is; {} when the model wrote
// arguments that are not a JSON object.
Json tool_input(const std::string& arguments) {
  Json input = Json::parse(arguments, nullptr, /*allow_exceptions=*/false);
  return input.is_object() ? input : Json::object();
}

class MessageResponder final : public Responder {
 public:
  explicit MessageResponder(std::string model)
      : model_(std::move(model)), id_(random_id("msg_", 24)) {}

  std::string stream_open() override { return ""; }

  std::string stream_keepalive() override {
    return started_ ? sse({{"type", "ping"}}, "ping") : ": keepalive\n\n";
  }

  std::string stream_event(const Event& e) override {
    switch (e.kind) {
      case Event::Kind::kStarted: {
        started_ = true;
        Usage u = e.usage;
        return sse({{"type", "message_start"},
                    {"message",
                     {{"id", id_},
                      {"type", "message"},
                      {"role", "assistant"},
                      {"model", model_},
                      {"content", Json::array()},
                      {"stop_reason", nullptr},
                      {"stop_sequence", nullptr},
                      {"usage", anthropic_usage(u)}}}},
                   "message_start");
      }
      case Event::Kind::kReasoning: {
        // Two statements: the block must be opened (its index set) before the delta is made.
        std::string out = open_block(Block::kThinking,
                                     {{"type", "thinking"}, {"thinking", ""}, {"signature", ""}});
        return out + delta({{"type", "thinking_delta"}, {"thinking", e.text}}, e.text);
      }
      case Event::Kind::kContent: {
        std::string out = open_block(Block::kText, {{"type", "text"}, {"text", ""}});
        return out + delta({{"type", "text_delta"}, {"text", e.text}}, "");
      }
      case Event::Kind::kToolCallBegin:
        saw_tool_ = true;
        return open_block(
            Block::kTool,
            {{"type", "tool_use"}, {"id", e.id}, {"name", e.text}, {"input", Json::object()}});
      case Event::Kind::kToolCallArguments:
        return delta({{"type", "input_json_delta"}, {"partial_json", e.text}}, "");
      case Event::Kind::kToolCallEnd:
        return close_block();
      default:
        return "";
    }
  }

  std::string stream_close(const GenerationResult& r) override {
    if (r.finish == FinishReason::kError) {
      return sse(stream_error_object(ApiFlavor::kAnthropic, r.error), "error");
    }
    std::string out = close_block();
    if (!saw_text_ && !saw_tool_) {
      out += open_block(Block::kText, {{"type", "text"}, {"text", ""}});
      out += close_block();
    }
    Json usage = anthropic_usage(r.usage);
    out += sse({{"type", "message_delta"},
                {"delta", {{"stop_reason", stop_reason(r)}, {"stop_sequence", stop_sequence(r)}}},
                {"usage", usage}},
               "message_delta");
    out += sse({{"type", "message_stop"}}, "message_stop");
    return out;
  }

  std::string body(const GenerationResult& r) override {
    Json content = Json::array();
    if (!r.reasoning.empty()) {
      content.push_back({{"type", "thinking"},
                         {"thinking", r.reasoning},
                         {"signature", thinking_signature(r.reasoning)}});
    }
    if (!r.content.empty()) content.push_back({{"type", "text"}, {"text", r.content}});
    for (const ToolCallResult& c : r.tool_calls) {
      content.push_back({{"type", "tool_use"},
                         {"id", c.id},
                         {"name", c.name},
                         {"input", tool_input(c.arguments)}});
    }
    if (r.content.empty() && r.tool_calls.empty()) {
      content.push_back({{"type", "text"}, {"text", ""}});
    }
    Json out = {{"id", id_},
                {"type", "message"},
                {"role", "assistant"},
                {"model", model_},
                {"content", std::move(content)},
                {"stop_reason", stop_reason(r)},
                {"stop_sequence", stop_sequence(r)},
                {"usage", anthropic_usage(r.usage)}};
    return json_text(out);
  }

 private:
  enum class Block { kNone, kThinking, kText, kTool };

  // Starts a block of `kind` unless one is open (closing another kind first).
  std::string open_block(Block kind, Json content_block) {
    if (open_ == kind && kind != Block::kTool) return "";
    std::string out = close_block();
    open_ = kind;
    if (kind == Block::kText) saw_text_ = true;
    out += sse({{"type", "content_block_start"},
                {"index", index_},
                {"content_block", std::move(content_block)}},
               "content_block_start");
    return out;
  }

  std::string delta(Json d, const std::string& thinking) {
    thinking_ += thinking;
    return sse({{"type", "content_block_delta"}, {"index", index_}, {"delta", std::move(d)}},
               "content_block_delta");
  }

  std::string close_block() {
    if (open_ == Block::kNone) return "";
    std::string out;
    if (open_ == Block::kThinking) {
      out += sse(
          {{"type", "content_block_delta"},
           {"index", index_},
           {"delta", {{"type", "signature_delta"}, {"signature", thinking_signature(thinking_)}}}},
          "content_block_delta");
    }
    out += sse({{"type", "content_block_stop"}, {"index", index_}}, "content_block_stop");
    open_ = Block::kNone;
    ++index_;
    return out;
  }

  std::string model_;
  std::string id_;
  bool started_ = false;
  Block open_ = Block::kNone;
  int index_ = 0;
  std::string thinking_;
  bool saw_text_ = false;
  bool saw_tool_ = false;
};

chat::ChatRequest parse_conversation(const Json& request, const ApiContext& ctx,
                                     ModelChoice& model) {
  model = resolve_model(ctx, request);
  auto choice = request.find("tool_choice");
  if (choice != request.end() && !choice->is_null()) {
    std::string type = choice->is_object() ? choice->value("type", "") : "";
    if (type != "auto" && type != "none") {
      throw bad_request("tool_choice must be {\"type\": \"auto\"} or {\"type\": \"none\"}",
                        "tool_choice");
    }
  }
  chat::ChatRequest chat;
  try {
    chat = chat::chat_request_from_anthropic(request);
  } catch (const chat::ChatError& e) {
    throw bad_request(e.what(), "messages");
  }
  auto thinking = request.find("thinking");
  settle_thinking(ctx, model, thinking != request.end() && !thinking->is_null(), chat.options);
  return chat;
}

}  // namespace

Prepared prepare_message(const Json& request, const ApiContext& ctx) {
  ModelChoice model;
  chat::ChatRequest chat = parse_conversation(request, ctx, model);
  Prepared p;
  p.job = conversation_job(ctx, chat, "messages");
  p.job.endpoint = Endpoint::kMessages;
  p.job.max_tokens = max_tokens(ctx, request, {"max_tokens"});
  p.job.sampling = sampling_params(request, /*extended=*/false);
  p.job.sampling.top_k = static_cast<int>(int_field(request, "top_k", 0, 1 << 30).value_or(0));
  p.job.stop = stop_strings_field(request, "stop_sequences", kMaxStopSequences);
  p.job.tool_id_prefix = "toolu_";
  p.stream = bool_field(request, "stream").value_or(false);
  p.responder = std::make_unique<MessageResponder>(model.name);
  return p;
}

std::string count_message_tokens(const Json& request, const ApiContext& ctx) {
  ModelChoice model;
  chat::ChatRequest chat = parse_conversation(request, ctx, model);
  JobRequest job = conversation_job(ctx, chat, "messages", /*check_context=*/false);
  return json_text({{"input_tokens", job.prompt_tokens.size()}});
}

}  // namespace magnetar::server
