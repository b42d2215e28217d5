// A multi-turn chat on one live session: what `magnetar run` and `magnetar chat` are built on.
//
// The conversation keeps its token transcript in the engine's session, so a new turn prefills
// only the tokens it adds: the user turn and the assistant prefix, rendered with the official
// encoding (chat/renderer.h) as a continuation of what is already there. The transcript holds
// the tokens the model actually sampled (not a re-tokenization of their text) and, in thinking
// mode, earlier turns keep their reasoning: the encoder's drop_thinking would rewrite history
// each turn and force a full re-prefill. The one change that rewrites the start of the prompt,
// turning Think-Max on or off (its instructions precede the system prompt), rebuilds the
// transcript from the messages.
//
// A turn can be cancelled from another thread (Ctrl+C). A turn cancelled during its prefill, or
// before it produced any token, is undone: the session returns to its state before the turn. One
// cancelled while generating keeps what was generated, closed with EOS like a finished answer.
//
// A conversation saves to bytes (its messages and settings plus the session's state) and loads
// back without any prefill; the bytes carry the model identity and a checksum (session_codec.h),
// and a damaged or foreign file is refused with a SessionError, leaving the conversation as it was.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "chat/message.h"
#include "chat/render_options.h"
#include "engine/engine.h"
#include "engine/sampler.h"

namespace magnetar::engine {

enum class FinishReason {
  kEos,        // the model ended its answer
  kLength,     // max_tokens reached
  kContext,    // the context is full
  kCancelled,  // cancelled while generating (the part generated is kept)
};

std::string_view finish_reason_name(FinishReason reason);

struct TurnOptions {
  SamplingParams sampling;
  int64_t max_tokens = 0;  // 0: until EOS or the context is full
};

struct TurnCallbacks {
  ProgressFn progress;  // prefill progress: tokens done and total of this turn's prefill
  // Generated text as it decodes (whole UTF-8 characters), and whether it is reasoning.
  std::function<void(std::string_view text, bool reasoning)> text;
};

struct TurnStats {
  int64_t cached_tokens = 0;   // transcript tokens reused from earlier turns
  int64_t prefill_tokens = 0;  // tokens prefilled for this turn
  int64_t generated_tokens = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;
  FinishReason finish = FinishReason::kEos;
  bool undone = false;  // cancelled before any token: the turn left no trace
};

class Conversation {
 public:
  // `engine` must outlive the conversation. The system prompt may be empty.
  Conversation(Engine& engine, std::string system_prompt);

  void set_thinking(chat::ThinkingMode mode, chat::ReasoningEffort effort);
  chat::ThinkingMode mode() const { return options_.mode; }
  chat::ReasoningEffort effort() const { return options_.effort; }
  bool thinking_max() const {
    return options_.mode == chat::ThinkingMode::kThinking &&
           options_.effort == chat::ReasoningEffort::kMax;
  }

  // Adds a user turn and generates the answer. Throws ContextOverflow (changing nothing) when the
  // turn's prompt does not fit the context, std::invalid_argument for bad sampling parameters.
  TurnStats reply(std::string_view user_text, const TurnOptions& options,
                  const TurnCallbacks& callbacks, const std::atomic<bool>* cancel = nullptr);

  // Forgets the turns (the system prompt and thinking settings stay).
  void clear();

  const std::vector<chat::Message>& messages() const { return messages_; }
  // The transcript: every token of the conversation so far, processed or waiting for the next
  // turn (the EOS closing the last answer).
  const std::vector<int32_t>& transcript() const { return session_->tokens(); }
  int64_t tokens_used() const { return static_cast<int64_t>(transcript().size()); }
  const Engine& engine() const { return engine_; }

  // The conversation as bytes, and back (throws SessionError, changing nothing, for a damaged,
  // truncated or foreign payload).
  std::vector<uint8_t> save() const;
  void load(std::span<const uint8_t> bytes);

 private:
  // The tokens of the prompt for a new user turn: a continuation of the transcript, or the whole
  // conversation rendered again when the transcript cannot be continued.
  std::vector<int32_t> turn_prompt(const std::vector<chat::Message>& with_user) const;

  Engine& engine_;
  std::string system_prompt_;
  chat::RenderOptions options_;
  std::vector<chat::Message> messages_;  // system (if any), then user/assistant turns
  std::unique_ptr<Session> session_;
  bool transcript_has_max_prefix_ = false;
};

}  // namespace magnetar::engine
