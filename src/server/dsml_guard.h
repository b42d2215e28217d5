// Where a tool-call block is being written, for sampling (server-api.md §7.1 step 3).
//
// While the model writes the structure of a DSML block (tags, attribute text, the whitespace
// between tags, JSON punctuation of string="false" values outside string literals, and a closing
// parameter tag once its first two bytes are visible) the next token is taken greedily, so a
// sampled temperature never breaks the grammar; argument payloads (string="true" bodies and JSON
// string literals) keep the request's sampling. The guard also tells when the block is closed,
// where generation stops for requests with tools (TC §8.6).
//
// It is fed the generated text as decoded, token by token; in thinking mode text before
// `</think>` is reasoning, where a block is never executable.
#pragma once

#include <string>
#include <string_view>

namespace magnetar::server {

class DsmlGuard {
 public:
  explicit DsmlGuard(bool thinking);

  void feed(std::string_view text);

  // The next token is part of the block's structure: sample it greedily.
  bool structural() const;
  // `</｜DSML｜tool_calls>` was written after a block start.
  bool block_closed() const { return state_ == State::kClosed; }
  bool in_reasoning() const { return state_ == State::kReasoning; }
  bool in_block() const { return state_ != State::kReasoning && state_ != State::kContent; }

 private:
  enum class State {
    kReasoning,    // before </think>
    kContent,      // before the block
    kStructure,    // between tags, or inside one
    kStringValue,  // a string="true" body
    kJsonValue,    // a string="false" value
    kClosed,       // after </｜DSML｜tool_calls>
  };
  void feed_byte(char c);
  void enter(State state);

  State state_;
  std::string recent_;       // bytes since entering the state (the last 64 kept)
  bool in_literal_ = false;  // kJsonValue: inside a JSON string literal
  bool escaped_ = false;     // kJsonValue: after a backslash inside a literal
};

}  // namespace magnetar::server
