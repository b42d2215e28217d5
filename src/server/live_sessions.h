// The live sessions (`--parallel N` slots) and how a new prompt reuses one (server-api.md §15).
//
// An idle slot holds the model state of its last conversation: the tokens L it processed, their
// decoded bytes D, and "aliases": other texts the same state stands for. A prompt with rendered
// text T and tokens Q is served from the slot that saves the most prefill:
//
//   1. token prefix: L is a prefix of Q, so only Q's tail is new;
//   2. rendered-byte prefix: D, or an alias, is a byte prefix of T, so the state continues with
//      the fresh tokenisation of T's remaining bytes (BPE may split the boundary differently from
//      the tokens the model sampled; the bytes are what matter).
//
// Aliases cover what a client replays after a turn: in thinking mode the reasoning is dropped or
// left out of the history the client sends back, so the next prompt holds the turn's visible
// text only (ds4's "thinking-visible" and "responses-visible" transcripts, §16.1), while the state
// keeps the hidden reasoning. Unlike ds4, the turn-closing EOS that follows the visible text is
// evaluated (it is part of T's remaining bytes), so the state matches a cold prefill's structure.
//
// A prompt that no slot serves goes to an empty slot, else to the least recently used one.
// Only the scheduler thread uses this class.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "chat/prompt.h"
#include "engine/engine.h"

namespace magnetar::server {

struct Slot {
  int index = 0;
  std::unique_ptr<engine::Session> session;
  std::string decoded;  // the bytes of the processed tokens
  // Other texts the processed state stands for (the visible transcripts of the last turn).
  std::vector<std::string> aliases;
  bool busy = false;
  uint64_t last_used = 0;  // a tick of LiveSessions; larger is more recent

  // The processed tokens L.
  std::span<const int32_t> processed() const {
    return std::span<const int32_t>(session->tokens()).first(session->processed());
  }
};

// How a prompt will be served.
struct Placement {
  Slot* slot = nullptr;
  std::vector<int32_t> tokens;  // what the slot must hold before generating
  int64_t reused = 0;           // tokens of `tokens` the slot already holds
  enum class Source { kNone, kTokenPrefix, kTextPrefix, kAlias } source = Source::kNone;
};

const char* source_name(Placement::Source source);

// The visible transcripts a client may replay after a turn that ended normally (EOS, or the end
// of its tool calls) in thinking mode: the prompt, then `</think>`, the content and the sampled
// tool-call block, with the reasoning left out (the form a tools request renders: `<think>` kept,
// empty reasoning) or dropped together with its `<think>` (the form of a request without tools).
// `unevaluated` is the bytes of a final token that ended the generation without being evaluated;
// they are left off, as the state does not hold them.
std::vector<std::string> visible_aliases(const std::string& prompt_text, bool tools_active,
                                         const std::string& content,
                                         const std::string& sampled_dsml,
                                         const std::string& unevaluated);

class LiveSessions {
 public:
  LiveSessions(engine::Engine& engine, int count);

  int count() const { return static_cast<int>(slots_.size()); }
  Slot& slot(int i) { return *slots_[i]; }

  // The idle slot that serves the prompt best and the tokens it must hold; nullopt when every
  // slot is busy. With no reuse the slot is the one to evict (an empty one when there is one).
  std::optional<Placement> place(const chat::Prompt& prompt, const std::string& prompt_text,
                                 const std::vector<int32_t>& prompt_tokens);

  // Marks the slot idle after a job; its state is whatever it processed. Recomputes the decoded
  // text and sets the aliases (the texts must be for the processed state).
  void release(Slot& slot, std::vector<std::string> aliases);

  // Marks the slot used now.
  void touch(Slot& slot) { slot.last_used = ++tick_; }

 private:
  engine::Engine& engine_;
  std::vector<std::unique_ptr<Slot>> slots_;
  uint64_t tick_ = 0;
};

}  // namespace magnetar::server
