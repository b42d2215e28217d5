#include "chat/completion_parser.h"

#include <algorithm>
#include <initializer_list>
#include <span>

#include "chat/python_json.h"
#include "chat/template_strings.h"

namespace magnetar::chat {
namespace {

// "\n\n<｜DSML｜tool_calls" (no `>`): where the tool block starts (§3.2).
constexpr std::string_view kBlockStart = "\n\n<｜DSML｜tool_calls";
constexpr std::string_view kBlockEnd = "</｜DSML｜tool_calls>";
constexpr std::string_view kInvokeStart = "<｜DSML｜invoke";
constexpr std::string_view kInvokeEnd = "</｜DSML｜invoke";
constexpr std::string_view kParamStart = "<｜DSML｜parameter";
constexpr std::string_view kParamEnd = "</｜DSML｜parameter";
constexpr std::string_view kBareParamEnd = "/｜DSML｜parameter";
constexpr std::string_view kNameOpen = " name=\"";
constexpr std::string_view kStringTrue = "\" string=\"true\">";
constexpr std::string_view kStringFalse = "\" string=\"false\">";

// Strings that may not occur in reasoning (the first one ends it) or in content (the first two
// end it). ｜DSML｜ outside a well-placed block start means a misplaced block.
constexpr std::string_view kReasoningMarkers[] = {kEndThink, kBos, kEos, kThink, kDsml};
constexpr std::string_view kContentMarkers[] = {kBlockStart, kEos, kBos, kThink, kEndThink, kDsml};

// The outcome of looking for the earliest of several markers in buffered text.
struct Scan {
  bool found = false;
  size_t pos = 0;    // found: where the marker starts
  size_t which = 0;  // found: its index
  size_t safe = 0;   // not found: how much of the text can no longer be part of a marker
};

// Finds the earliest complete marker, unless a marker that starts earlier may still complete
// once more text arrives (then, as when nothing is found, only the text before any possible
// marker start is safe). At the end of the text nothing more can arrive.
Scan scan(std::string_view text, std::span<const std::string_view> markers, bool at_end) {
  Scan s;
  size_t earliest = std::string_view::npos;
  for (size_t i = 0; i < markers.size(); ++i) {
    size_t at = text.find(markers[i]);
    if (at < earliest) {
      earliest = at;
      s.which = i;
    }
  }
  size_t partial = text.size();
  if (!at_end) {
    for (size_t q = 0; q < text.size() && q < partial; ++q) {
      std::string_view tail = text.substr(q);
      for (std::string_view m : markers) {
        if (tail.size() < m.size() && m.substr(0, tail.size()) == tail) {
          partial = q;
          break;
        }
      }
    }
  }
  if (earliest != std::string_view::npos && earliest <= partial) {
    s.found = true;
    s.pos = earliest;
  } else {
    s.safe = std::min(partial, text.size());
  }
  return s;
}

std::string json_escaped(std::string_view text) {
  std::string quoted;
  append_python_json_string(quoted, text);
  return quoted.substr(1, quoted.size() - 2);
}

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

}  // namespace

CompletionParser::CompletionParser(ThinkingMode mode)
    : state_(mode == ThinkingMode::kThinking ? State::kReasoning : State::kContent) {
  result_.message.role = Role::kAssistant;
}

std::vector<CompletionEvent> CompletionParser::feed(std::string_view chunk) {
  if (state_ != State::kFailed && !at_end_) {
    buffer_ += chunk;
    advance();
  }
  return std::move(events_);
}

std::vector<CompletionEvent> CompletionParser::finish() {
  if (state_ == State::kFailed || at_end_) return std::move(events_);
  at_end_ = true;
  advance();
  switch (state_) {
    case State::kReasoning:
      fail(CompletionError::Kind::kTruncated,
           "the completion ended inside the reasoning "
           "(no </think>)");
      break;
    case State::kContent:
      fail(CompletionError::Kind::kTruncated, "the completion ended without EOS");
      break;
    case State::kAfterBlock:
    case State::kAfterEos:
    case State::kFailed:
      break;
    default:
      fail(CompletionError::Kind::kTruncated,
           "the completion ended inside a tool-call block (no </｜DSML｜tool_calls>)");
  }
  return std::move(events_);
}

void CompletionParser::advance() {
  while (state_ != State::kFailed && step()) {
  }
}

void CompletionParser::fail(CompletionError::Kind kind, std::string message) {
  if (call_open_) result_.message.tool_calls.pop_back();  // the result holds closed calls only
  events_.push_back({CompletionEvent::Kind::kError, message});
  result_.error = CompletionError{kind, std::move(message)};
  state_ = State::kFailed;
  buffer_.clear();
}

void CompletionParser::emit_text(std::string_view text) {
  if (text.empty()) return;
  bool reasoning = state_ == State::kReasoning;
  (reasoning ? result_.message.reasoning : result_.message.content) += text;
  auto kind = reasoning ? CompletionEvent::Kind::kReasoning : CompletionEvent::Kind::kContent;
  if (!events_.empty() && events_.back().kind == kind) {
    events_.back().text += text;
  } else {
    events_.push_back({kind, std::string(text)});
  }
}

void CompletionParser::emit_arguments(std::string_view text) {
  if (text.empty()) return;
  result_.message.tool_calls.back().arguments.get_ref<std::string&>() += text;
  int index = static_cast<int>(result_.message.tool_calls.size()) - 1;
  if (!events_.empty() && events_.back().kind == CompletionEvent::Kind::kToolCallArguments) {
    events_.back().text += text;
  } else {
    events_.push_back({CompletionEvent::Kind::kToolCallArguments, std::string(text), index});
  }
}

void CompletionParser::close_call(int index) {
  emit_arguments("}");
  events_.push_back({CompletionEvent::Kind::kToolCallEnd, "", index});
  call_open_ = false;
  state_ = State::kBlock;
}

bool CompletionParser::step() {
  int which = 0;
  switch (state_) {
    case State::kReasoning:
      return step_text(true);
    case State::kContent:
      return step_text(false);
    case State::kBlock:
      if (!step_literals({kInvokeStart, kBlockEnd}, which)) return false;
      if (which == 0) {
        state_ = State::kInvokeHeader;
      } else {
        state_ = State::kAfterBlock;
      }
      return true;
    case State::kInvokeHeader:
      return step_invoke_header();
    case State::kParamHeader:
      return step_param_header();
    case State::kParamValue:
      return step_param_value();
    case State::kParamEnd:
      if (!step_literals({kParamStart, kInvokeEnd}, which)) return false;
      if (which == 0) {
        state_ = State::kParamHeader;
      } else {
        int index = static_cast<int>(result_.message.tool_calls.size()) - 1;
        close_call(index);
      }
      return true;
    case State::kAfterBlock:
      if (buffer_.empty()) return false;
      if (std::string_view(kEos).substr(0, buffer_.size()) == buffer_ && !at_end_) return false;
      if (buffer_.starts_with(kEos)) {
        buffer_.erase(0, kEos.size());
        state_ = State::kAfterEos;
        return true;
      }
      fail(CompletionError::Kind::kMalformed, "unexpected text after the tool calls");
      return false;
    case State::kAfterEos:
      if (!buffer_.empty()) fail(CompletionError::Kind::kMalformed, "unexpected text after EOS");
      return false;
    case State::kFailed:
      return false;
  }
  return false;
}

bool CompletionParser::step_text(bool reasoning) {
  std::span<const std::string_view> markers =
      reasoning ? std::span<const std::string_view>(kReasoningMarkers)
                : std::span<const std::string_view>(kContentMarkers);
  Scan s = scan(buffer_, markers, at_end_);
  if (!s.found) {
    emit_text(std::string_view(buffer_).substr(0, s.safe));
    buffer_.erase(0, s.safe);
    return false;
  }
  emit_text(std::string_view(buffer_).substr(0, s.pos));
  std::string_view marker = markers[s.which];
  buffer_.erase(0, s.pos + marker.size());
  if (reasoning && s.which == 0) {
    state_ = State::kContent;
  } else if (!reasoning && s.which == 0) {
    state_ = State::kBlock;
  } else if (!reasoning && s.which == 1) {
    state_ = State::kAfterEos;
  } else {
    fail(CompletionError::Kind::kMalformed,
         "unexpected " + std::string(marker) +
             (reasoning ? " in the reasoning" : " in the content"));
  }
  return true;
}

// Expects `>\n` followed by one of `expected` at the start of the buffer (the only text the
// grammar allows between two tags) and consumes it.
bool CompletionParser::step_literals(std::initializer_list<std::string_view> expected, int& which) {
  which = 0;
  bool could_grow = false;
  for (std::string_view tag : expected) {
    std::string want = ">\n" + std::string(tag);
    if (buffer_.starts_with(want)) {
      buffer_.erase(0, want.size());
      return true;
    }
    if (want.starts_with(buffer_)) could_grow = true;
    ++which;
  }
  if (could_grow) return false;  // at the end of the text finish() reports the truncation
  fail(CompletionError::Kind::kMalformed,
       "unexpected text between DSML tags (only a single \">\\n\" is allowed)");
  return false;
}

bool CompletionParser::step_invoke_header() {
  static constexpr std::string_view kEnds[] = {kParamStart, kInvokeEnd};
  Scan s = scan(buffer_, kEnds, at_end_);
  if (!s.found) return false;
  std::string_view header = std::string_view(buffer_).substr(0, s.pos);
  size_t i = 0;
  while (i < header.size() && is_space(header[i])) ++i;
  header.remove_prefix(i);
  size_t suffix = header.ends_with("\">\n\n") ? 4 : header.ends_with("\">\n") ? 3 : 0;
  if (!header.starts_with("name=\"") || suffix == 0 || header.size() < 6 + suffix) {
    fail(CompletionError::Kind::kMalformed, "malformed invoke header (expected name=\"...\">)");
    return false;
  }
  std::string name(header.substr(6, header.size() - 6 - suffix));
  if (name.find('\n') != std::string::npos) {
    fail(CompletionError::Kind::kMalformed, "tool name contains a line break");
    return false;
  }
  int index = static_cast<int>(result_.message.tool_calls.size());
  result_.message.tool_calls.push_back({"", name, ""});
  param_names_.clear();
  events_.push_back({CompletionEvent::Kind::kToolCallBegin, name, index});
  call_open_ = true;
  emit_arguments("{");
  buffer_.erase(0, s.pos + kEnds[s.which].size());
  if (s.which == 0) {
    state_ = State::kParamHeader;
  } else {
    close_call(index);
  }
  return true;
}

bool CompletionParser::step_param_header() {
  if (!buffer_.starts_with(kNameOpen)) {
    if (kNameOpen.starts_with(buffer_)) return false;
    fail(CompletionError::Kind::kMalformed, "malformed parameter tag (expected name=\"...\")");
    return false;
  }
  // The key is the shortest text followed by `" string="true">` or `" string="false">`; the
  // parameter's end marker before that means the string attribute is missing.
  static constexpr std::string_view kEnds[] = {kStringTrue, kStringFalse, kBareParamEnd};
  std::string_view rest = std::string_view(buffer_).substr(kNameOpen.size());
  Scan s = scan(rest, kEnds, at_end_);
  if (!s.found) return false;
  if (s.which == 2) {
    fail(CompletionError::Kind::kMalformed, "parameter without string=\"true|false\"");
    return false;
  }
  std::string key(rest.substr(0, s.pos));
  if (!param_names_.insert(key).second) {
    fail(CompletionError::Kind::kMalformed, "duplicate parameter '" + key + "'");
    return false;
  }
  param_is_string_ = s.which == 0;
  std::string head = param_names_.size() > 1 ? ", " : "";
  append_python_json_string(head, key);
  head += param_is_string_ ? ": \"" : ": ";
  emit_arguments(head);
  buffer_.erase(0, kNameOpen.size() + s.pos + kEnds[s.which].size());
  state_ = State::kParamValue;
  return true;
}

bool CompletionParser::step_param_value() {
  // The value ends at the first `/｜DSML｜parameter`, which must follow a `<`.
  static constexpr std::string_view kEnds[] = {kParamEnd, kBareParamEnd};
  Scan s = scan(buffer_, kEnds, at_end_);
  std::string_view value = std::string_view(buffer_).substr(0, s.found ? s.pos : s.safe);
  emit_arguments(param_is_string_ ? json_escaped(value) : std::string(value));
  if (!s.found) {
    buffer_.erase(0, s.safe);
    return false;
  }
  if (s.which == 1) {
    fail(CompletionError::Kind::kMalformed, "parameter value not closed by </｜DSML｜parameter>");
    return false;
  }
  if (param_is_string_) emit_arguments("\"");
  buffer_.erase(0, s.pos + kParamEnd.size());
  state_ = State::kParamEnd;
  return true;
}

ParsedCompletion parse_completion(std::string_view text, ThinkingMode mode) {
  CompletionParser parser(mode);
  parser.feed(text);
  parser.finish();
  return parser.result();
}

}  // namespace magnetar::chat
