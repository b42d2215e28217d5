#include "engine/conversation.h"

#include <chrono>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>

#include "chat/renderer.h"
#include "chat/template_strings.h"
#include "engine/prompt_tokens.h"

namespace magnetar::engine {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

int32_t control_id(const tokenizer::Tokenizer& tok, std::string_view text) {
  std::optional<int32_t> id = tok.token_id(text);
  if (!id) throw std::runtime_error("the model's vocabulary has no token " + std::string(text));
  return *id;
}

// The saved form: "MAGCHAT1", u64 length + JSON (settings and messages), u64 length + the
// session's own self-checking bytes (session_codec.h), then the SHA-256 of everything before.
constexpr char kMagic[8] = {'M', 'A', 'G', 'C', 'H', 'A', 'T', '1'};

void put_u64(std::vector<uint8_t>& out, uint64_t v) {
  const auto* p = reinterpret_cast<const uint8_t*>(&v);
  out.insert(out.end(), p, p + 8);
}

uint64_t get_u64(std::span<const uint8_t> in, size_t at) {
  uint64_t v;
  std::memcpy(&v, in.data() + at, 8);
  return v;
}

std::string role_name(chat::Role role) {
  switch (role) {
    case chat::Role::kSystem:
      return "system";
    case chat::Role::kUser:
      return "user";
    case chat::Role::kAssistant:
      return "assistant";
    default:
      throw std::logic_error("a conversation holds system, user and assistant messages only");
  }
}

chat::Role role_of(const std::string& name) {
  if (name == "system") return chat::Role::kSystem;
  if (name == "user") return chat::Role::kUser;
  if (name == "assistant") return chat::Role::kAssistant;
  throw SessionError("conversation file: unknown role '" + name + "'");
}

}  // namespace

std::string_view finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::kEos:
      return "eos";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kContext:
      return "context";
    case FinishReason::kCancelled:
      return "cancelled";
  }
  return "?";
}

Conversation::Conversation(Engine& engine, std::string system_prompt)
    : engine_(engine), system_prompt_(std::move(system_prompt)), session_(engine.new_session()) {
  options_.drop_thinking = false;  // see the header: history is never rewritten
  clear();
}

void Conversation::set_thinking(chat::ThinkingMode mode, chat::ReasoningEffort effort) {
  options_.mode = mode;
  options_.effort = effort;
}

void Conversation::clear() {
  messages_.clear();
  if (!system_prompt_.empty()) {
    chat::Message system;
    system.role = chat::Role::kSystem;
    system.content = system_prompt_;
    messages_.push_back(std::move(system));
  }
  session_->reset();
  transcript_has_max_prefix_ = false;
}

std::vector<int32_t> Conversation::turn_prompt(const std::vector<chat::Message>& with_user) const {
  const tokenizer::Tokenizer& tok = engine_.tokenizer();
  if (session_->tokens().empty() || thinking_max() != transcript_has_max_prefix_) {
    return prompt_tokens(tok, chat::render_prompt(with_user, options_));
  }
  // The continuation: the user turn rendered on its own, after the EOS that closes the transcript.
  // Effort stays high here: Think-Max's instructions belong at the start, and are already there.
  chat::RenderOptions suffix_options = options_;
  suffix_options.add_bos = false;
  suffix_options.effort = chat::ReasoningEffort::kHigh;
  std::vector<int32_t> ids = session_->tokens();
  std::vector<int32_t> more =
      prompt_tokens(tok, chat::render_prompt({with_user.back()}, suffix_options));
  ids.insert(ids.end(), more.begin(), more.end());
  return ids;
}

TurnStats Conversation::reply(std::string_view user_text, const TurnOptions& options,
                              const TurnCallbacks& callbacks, const std::atomic<bool>* cancel) {
  if (options.max_tokens < 0) throw std::invalid_argument("max_tokens must not be negative");
  Sampler sampler(options.sampling);  // refuses bad parameters before anything changes
  const tokenizer::Tokenizer& tok = engine_.tokenizer();
  const int32_t eos = control_id(tok, chat::kEos);
  const int32_t end_think = control_id(tok, chat::kEndThink);

  std::vector<chat::Message> with_user = messages_;
  chat::Message user;
  user.role = chat::Role::kUser;
  user.content = std::string(user_text);
  with_user.push_back(user);
  const std::vector<int32_t> prompt = turn_prompt(with_user);

  // What the session was before the turn, to undo a turn cancelled before it produced anything.
  const SessionState before = session_->snapshot();
  const std::vector<int32_t> before_tokens = session_->tokens();
  const bool before_max_prefix = transcript_has_max_prefix_;
  auto undo = [&] {
    session_->restore(before);
    session_->set_tokens(before_tokens);
    transcript_has_max_prefix_ = before_max_prefix;
  };

  TurnStats stats;
  session_->set_tokens(prompt);  // throws ContextOverflow before anything changed
  stats.cached_tokens = session_->processed();
  stats.prefill_tokens = session_->pending();
  Session* one = session_.get();
  const Clock::time_point prefill_start = Clock::now();
  engine_.step(std::span(&one, 1), callbacks.progress, cancel);
  stats.prefill_seconds = seconds_since(prefill_start);
  if (session_->pending() > 0) {  // cancelled during the prefill
    undo();
    stats.finish = FinishReason::kCancelled;
    stats.undone = true;
    return stats;
  }
  transcript_has_max_prefix_ = thinking_max();  // a continuation only happens when they agree

  const Clock::time_point decode_start = Clock::now();
  bool reasoning = options_.mode == chat::ThinkingMode::kThinking;
  tokenizer::StreamDecoder decoder(tok);
  chat::Message answer;
  answer.role = chat::Role::kAssistant;
  auto emit = [&](const std::string& text) {
    if (text.empty()) return;
    (reasoning ? answer.reasoning : answer.content) += text;
    if (callbacks.text) callbacks.text(text, reasoning);
  };
  for (;;) {
    if (cancel != nullptr && cancel->load()) {
      stats.finish = FinishReason::kCancelled;
      break;
    }
    const int32_t token = sampler.sample(session_->logits()).token;
    ++stats.generated_tokens;
    if (token == eos) {  // appended below, with the rest of the closing
      stats.finish = FinishReason::kEos;
      break;
    }
    session_->append(token);  // fits: the loop stops before the context is full
    if (token == end_think && reasoning) {
      emit(decoder.flush());
      reasoning = false;
    } else {
      emit(decoder.push(token));
    }
    if (options.max_tokens > 0 && stats.generated_tokens >= options.max_tokens) {
      stats.finish = FinishReason::kLength;
      break;
    }
    if (tokens_used() >= engine_.context()) {
      stats.finish = FinishReason::kContext;
      break;
    }
    engine_.step(std::span(&one, 1));
  }
  emit(decoder.flush());
  stats.decode_seconds = seconds_since(decode_start);

  if (stats.generated_tokens == 0) {  // cancelled before the first token
    undo();
    stats.undone = true;
    return stats;
  }
  // Close the answer as the official encoding renders an assistant message (reasoning, then
  // `</think>`, content, EOS), also when it was cut short or ended inside its reasoning, so that
  // the transcript stays the encoding of the messages and the next turn continues cleanly.
  std::vector<int32_t> closing;
  if (reasoning) closing.push_back(end_think);
  closing.push_back(eos);
  if (tokens_used() + static_cast<int64_t>(closing.size()) <= engine_.context()) {
    for (int32_t t : closing) session_->append(t);
  }
  messages_.push_back(std::move(user));
  messages_.push_back(std::move(answer));
  return stats;
}

std::vector<uint8_t> Conversation::save() const {
  nlohmann::json j;
  j["system"] = system_prompt_;
  j["thinking"] = options_.mode == chat::ThinkingMode::kThinking;
  j["effort_max"] = options_.effort == chat::ReasoningEffort::kMax;
  j["transcript_has_max_prefix"] = transcript_has_max_prefix_;
  // Tokens of the transcript not yet processed (the EOS closing the last answer): the session's
  // bytes hold the processed state only.
  const std::vector<int32_t>& tokens = session_->tokens();
  j["pending"] = std::vector<int32_t>(tokens.begin() + session_->processed(), tokens.end());
  j["messages"] = nlohmann::json::array();
  for (const chat::Message& m : messages_) {
    j["messages"].push_back(
        {{"role", role_name(m.role)}, {"content", m.content}, {"reasoning", m.reasoning}});
  }
  // Invalid UTF-8 a random model may produce is replaced rather than refused.
  const std::string text = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  const std::vector<uint8_t> session = session_->save();

  std::vector<uint8_t> out(kMagic, kMagic + sizeof kMagic);
  put_u64(out, text.size());
  out.insert(out.end(), text.begin(), text.end());
  put_u64(out, session.size());
  out.insert(out.end(), session.begin(), session.end());
  const std::array<uint8_t, 32> digest = sha256(out);
  out.insert(out.end(), digest.begin(), digest.end());
  return out;
}

void Conversation::load(std::span<const uint8_t> bytes) {
  if (bytes.size() < sizeof kMagic + 8 + 8 + 32)
    throw SessionError("conversation file is truncated");
  if (std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0) {
    throw SessionError("not a Magnetar conversation (bad magic)");
  }
  const std::array<uint8_t, 32> digest = sha256(bytes.first(bytes.size() - 32));
  if (std::memcmp(digest.data(), bytes.data() + bytes.size() - 32, 32) != 0) {
    throw SessionError("conversation file is damaged or truncated (checksum mismatch)");
  }
  const std::span<const uint8_t> body = bytes.first(bytes.size() - 32);
  size_t at = sizeof kMagic;
  const uint64_t text_size = get_u64(body, at);
  at += 8;
  if (text_size > body.size() - at - 8) throw SessionError("conversation file: bad length");
  const std::string text(reinterpret_cast<const char*>(body.data() + at), text_size);
  at += text_size;
  const uint64_t session_size = get_u64(body, at);
  at += 8;
  if (session_size != body.size() - at) throw SessionError("conversation file: bad length");

  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) throw SessionError("conversation file: bad settings");
  Conversation loaded(engine_, "");
  try {
    loaded.system_prompt_ = j.at("system").get<std::string>();
    loaded.options_.mode =
        j.at("thinking").get<bool>() ? chat::ThinkingMode::kThinking : chat::ThinkingMode::kChat;
    loaded.options_.effort =
        j.at("effort_max").get<bool>() ? chat::ReasoningEffort::kMax : chat::ReasoningEffort::kHigh;
    loaded.transcript_has_max_prefix_ = j.at("transcript_has_max_prefix").get<bool>();
    for (const nlohmann::json& m : j.at("messages")) {
      chat::Message message;
      message.role = role_of(m.at("role").get<std::string>());
      message.content = m.at("content").get<std::string>();
      message.reasoning = m.at("reasoning").get<std::string>();
      loaded.messages_.push_back(std::move(message));
    }
  } catch (const nlohmann::json::exception& e) {
    throw SessionError(std::string("conversation file: bad settings: ") + e.what());
  }
  std::vector<int32_t> pending;
  try {
    pending = j.at("pending").get<std::vector<int32_t>>();
  } catch (const nlohmann::json::exception& e) {
    throw SessionError(std::string("conversation file: bad settings: ") + e.what());
  }
  loaded.session_->load(body.subspan(at));  // checks the model identity and its own checksum
  std::vector<int32_t> transcript = loaded.session_->tokens();
  transcript.insert(transcript.end(), pending.begin(), pending.end());
  for (int32_t t : pending) {
    if (t < 0 || t >= static_cast<int64_t>(engine_.config().n_vocab)) {
      throw SessionError("conversation file: a pending token is outside the vocabulary");
    }
  }
  try {
    loaded.session_->set_tokens(transcript);
  } catch (const ContextOverflow& e) {
    throw SessionError(std::string("conversation file: ") + e.what());
  }
  system_prompt_ = std::move(loaded.system_prompt_);
  options_ = loaded.options_;
  transcript_has_max_prefix_ = loaded.transcript_has_max_prefix_;
  messages_ = std::move(loaded.messages_);
  session_ = std::move(loaded.session_);
}

}  // namespace magnetar::engine
