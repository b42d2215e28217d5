#include "server/generation.h"

#include "chat/template_strings.h"

namespace magnetar::server {
namespace {

constexpr std::string_view kBlockStart = "\n\n<｜DSML｜tool_calls";
constexpr std::string_view kBlockEnd = "</｜DSML｜tool_calls>";

}  // namespace

const char* openai_finish_reason(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kToolCalls:
      return "tool_calls";
    default:
      return "error";
  }
}

Generation::Generation(const JobRequest& request, const tokenizer::Tokenizer& tokenizer,
                       const kvcache::ToolIdMap& ids)
    : request_(request),
      tokenizer_(tokenizer),
      ids_(ids),
      sampler_(request.sampling),
      decoder_(tokenizer),
      parser_(request.mode),
      stop_(request.stop),
      guard_(request.mode == chat::ThinkingMode::kThinking) {}

int32_t Generation::choose(std::span<const float> logits) {
  if (request_.forced_tokens) {
    const std::vector<int32_t>& forced = *request_.forced_tokens;
    return forced_next_ < forced.size() ? forced[forced_next_++] : tokenizer_.eos_id();
  }
  if (request_.tools_active && guard_.structural()) return sampler_.sample_greedy(logits).token;
  return sampler_.sample(logits).token;
}

bool Generation::accept(int32_t token, std::vector<Event>& out) {
  if (finished_) return false;
  if (token == tokenizer_.eos_id()) {
    std::string tail = decoder_.flush();
    if (request_.raw) {
      emit_content(tail, out);
    } else {
      handle(parser_.feed(tail + std::string(chat::kEos)), out);
      if (!finished_) handle(parser_.finish(), out);
    }
    if (!finished_) {
      finish(result_.tool_calls.empty() ? FinishReason::kStop : FinishReason::kToolCalls, out);
    }
    return false;
  }
  ++result_.usage.completion_tokens;
  if (guard_.in_reasoning()) ++result_.usage.reasoning_tokens;
  const std::string& bytes = tokenizer_.token_bytes(token);
  raw_ += bytes;
  guard_.feed(bytes);
  std::string piece = decoder_.push(token);
  if (request_.raw) {
    emit_content(piece, out);
  } else {
    handle(parser_.feed(piece), out);
  }
  if (finished_) return false;
  if (!request_.raw && request_.tools_active && guard_.block_closed()) {
    handle(parser_.finish(), out);
    if (!finished_) finish(FinishReason::kToolCalls, out);
    return false;
  }
  if (result_.usage.completion_tokens >= request_.max_tokens) {
    stop(FinishReason::kLength, "", out);
    return false;
  }
  return true;
}

void Generation::stop(FinishReason reason, const std::string& error, std::vector<Event>& out) {
  if (finished_) return;
  result_.error = error;
  std::string tail = decoder_.flush();
  if (request_.raw) {
    emit_content(tail, out);
  } else if (reason == FinishReason::kLength || reason == FinishReason::kStop) {
    // Text the parser held back (a possible marker start) is released; the truncation error
    // finish() reports is expected here and not a parse failure.
    std::vector<chat::CompletionEvent> events = parser_.feed(tail);
    std::vector<chat::CompletionEvent> last = parser_.finish();
    events.insert(events.end(), last.begin(), last.end());
    std::erase_if(events, [](const chat::CompletionEvent& e) {
      return e.kind == chat::CompletionEvent::Kind::kError;
    });
    handle(std::move(events), out);
  }
  if (!finished_) finish(reason, out);
}

void Generation::handle(std::vector<chat::CompletionEvent> events, std::vector<Event>& out) {
  using Kind = chat::CompletionEvent::Kind;
  for (chat::CompletionEvent& e : events) {
    if (finished_) return;
    switch (e.kind) {
      case Kind::kReasoning:
        result_.reasoning += e.text;
        out.push_back(Event::delta(Event::Kind::kReasoning, std::move(e.text)));
        break;
      case Kind::kContent:
        emit_content(e.text, out);
        break;
      case Kind::kToolCallBegin: {
        release_held_content(out);
        std::vector<std::string> taken;  // the turn's other ids: every id of a turn is distinct
        for (const ToolCallResult& c : result_.tool_calls) taken.push_back(c.id);
        ToolCallResult call{ids_.new_id(request_.tool_id_prefix, taken), e.text, ""};
        out.push_back(Event::delta(Event::Kind::kToolCallBegin, e.text, e.call_index, call.id));
        result_.tool_calls.push_back(std::move(call));
        break;
      }
      case Kind::kToolCallArguments:
        result_.tool_calls.at(e.call_index).arguments += e.text;
        out.push_back(Event::delta(Event::Kind::kToolCallArguments, e.text, e.call_index));
        break;
      case Kind::kToolCallEnd:
        out.push_back(Event::delta(Event::Kind::kToolCallEnd, "", e.call_index));
        break;
      case Kind::kError:
        // The completion broke the DSML grammar: keep what was parsed (closed calls only) and
        // end here, as nothing after an error can be parsed.
        parse_error_ = e.text;
        finish(result_.tool_calls.empty() ? FinishReason::kStop : FinishReason::kToolCalls, out);
        return;
    }
  }
}

void Generation::emit_content(const std::string& text, std::vector<Event>& out) {
  if (text.empty() || finished_) return;
  engine::StopMatcher::Output o = stop_.feed(text);
  if (!o.text.empty()) {
    (request_.raw ? result_.text : result_.content) += o.text;
    out.push_back(Event::delta(Event::Kind::kContent, std::move(o.text)));
  }
  if (o.stop) {
    result_.stop_sequence = request_.stop[*o.stop];
    finish(FinishReason::kStop, out);
  }
}

void Generation::release_held_content(std::vector<Event>& out) {
  std::string held = stop_.flush();
  if (held.empty()) return;
  (request_.raw ? result_.text : result_.content) += held;
  out.push_back(Event::delta(Event::Kind::kContent, std::move(held)));
}

void Generation::finish(FinishReason reason, std::vector<Event>& out) {
  if (!result_.stop_sequence) release_held_content(out);
  if (!request_.raw) {
    // Only closed calls count: the parser drops a call cut off by the end of the text.
    parser_.finish();
    const size_t closed = parser_.result().message.tool_calls.size();
    if (result_.tool_calls.size() > closed) result_.tool_calls.resize(closed);
    if (result_.tool_calls.empty() && reason == FinishReason::kToolCalls) {
      reason = FinishReason::kStop;
    }
  }
  finished_ = true;
  result_.finish = reason;
}

std::string Generation::sampled_dsml() const {
  if (result_.tool_calls.empty()) return "";
  size_t begin = raw_.rfind(kBlockStart);
  if (begin == std::string::npos) return "";
  size_t end = raw_.find(kBlockEnd, begin);
  if (end == std::string::npos) return "";
  return raw_.substr(begin, end + kBlockEnd.size() - begin);
}

}  // namespace magnetar::server
