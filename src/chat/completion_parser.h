// Turns the text DeepSeek V4 generates after the prompt into reasoning, content and tool calls,
// as the official parser does (official-encoding.md §3), while the text streams in.
//
// Input is the decoded completion with control tokens kept as text, normally ending with
// `<｜end▁of▁sentence｜>` (§3.1); in thinking mode it starts after the prompt's `<think>`.
// Grammar: [reasoning `</think>`] content, then either EOS or a DSML block
//   "\n\n<｜DSML｜tool_calls>\n" invoke... "</｜DSML｜tool_calls>" [EOS]
// with exactly the spellings the template teaches (§2.9, §3.2); everything else is an error.
//
// The parser is incremental: feed() takes chunks of any size (token pieces) and returns the events
// they complete; text that could still turn out to be the start of a marker is held back until
// it is resolved. The result never depends on how the text was chunked: parse_completion() is
// feed(whole text) + finish().
//
// Tolerances and errors (§3.4): whitespace before `name=` in an invoke header and one or two
// newlines after it are accepted, and a missing EOS after `</｜DSML｜tool_calls>` is accepted. A
// DSML block not preceded by exactly "\n\n", a parameter without string="true|false", any other
// whitespace between tags, a repeated parameter name, text after the block or after EOS, a
// repeated `<think>`, and control strings inside reasoning or content are malformed. Where the
// official parser silently accepts a cut-off block (§3.4 "truncation laxity"), this one reports
// kTruncated, as the spec recommends: a completion that ends without EOS, or inside reasoning or
// a tool-call block, is truncated.
#pragma once

#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "chat/message.h"
#include "chat/render_options.h"

namespace magnetar::chat {

struct CompletionEvent {
  enum class Kind {
    kReasoning,          // text: a reasoning delta
    kContent,            // text: a content delta
    kToolCallBegin,      // text: the tool's name, reported as soon as its invoke header is complete
    kToolCallArguments,  // text: the next bytes of the call's arguments JSON text (§3.3)
    kToolCallEnd,        // the call's arguments are complete
    kError,              // text: what is wrong; nothing follows an error
  };
  Kind kind;
  std::string text;
  int call_index = -1;  // for the tool-call kinds: the call's position in the message

  bool operator==(const CompletionEvent&) const = default;
};

struct CompletionError {
  enum class Kind {
    kMalformed,  // the text breaks the grammar
    kTruncated,  // the text ended before the grammar allows it to end
  };
  Kind kind;
  std::string message;

  bool operator==(const CompletionError&) const = default;
};

struct ParsedCompletion {
  // Role assistant; reasoning (thinking mode), content, and every call whose invoke was closed
  // (arguments text as in §3.3, e.g. {"city": "Shanghai", "days": 2}; no ids).
  Message message;
  std::optional<CompletionError> error;
};

class CompletionParser {
 public:
  explicit CompletionParser(ThinkingMode mode);

  // Consumes the next chunk and returns the events it completes.
  std::vector<CompletionEvent> feed(std::string_view chunk);
  // Marks the end of the text: resolves held-back text and reports truncation.
  std::vector<CompletionEvent> finish();

  const ParsedCompletion& result() const { return result_; }

 private:
  enum class State {
    kReasoning,     // before `</think>`
    kContent,       // before EOS or the DSML block
    kBlock,         // after the block opening, or after an invoke: expect `>\n` + invoke | close
    kInvokeHeader,  // after `<｜DSML｜invoke`: ` name="NAME">\n`
    kParamHeader,   // after `<｜DSML｜parameter`: ` name="KEY" string="true|false">`
    kParamValue,    // the value, up to `</｜DSML｜parameter`
    kParamEnd,      // expect `>\n` + parameter | invoke end
    kAfterBlock,    // after `</｜DSML｜tool_calls>`: only EOS may follow
    kAfterEos,      // nothing may follow
    kFailed,
  };

  // Runs the state machine over the buffered text until it needs more input.
  void advance();
  // One transition; false when the buffered text is not enough to decide.
  bool step();
  bool step_text(bool reasoning);
  bool step_literals(std::initializer_list<std::string_view> expected, int& which);
  bool step_invoke_header();
  bool step_param_header();
  bool step_param_value();
  void emit_text(std::string_view text);
  void emit_arguments(std::string_view text);
  void close_call(int index);
  void fail(CompletionError::Kind kind, std::string message);

  State state_;
  std::string buffer_;  // text received but not yet consumed
  bool at_end_ = false;
  bool call_open_ = false;  // a kToolCallBegin was reported and its kToolCallEnd not yet
  bool param_is_string_ = false;
  std::set<std::string> param_names_;  // of the current invoke
  std::vector<CompletionEvent> events_;
  ParsedCompletion result_;
};

// The whole completion at once; equal to feeding it in any chunking and calling finish().
ParsedCompletion parse_completion(std::string_view text, ThinkingMode mode);

}  // namespace magnetar::chat
