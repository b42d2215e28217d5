// A generation request on its way from an HTTP handler thread to the scheduler, and the events
// that come back.
//
// The handler renders and tokenises the prompt (so that malformed requests never reach the
// engine), submits the Job and reads its EventChannel; the scheduler thread pushes events and
// never blocks on the handler. The handler sets `cancelled` when its client goes away; the
// scheduler then drops the job at its next step.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "chat/prompt.h"
#include "chat/render_options.h"
#include "engine/sampler.h"

namespace magnetar::server {

enum class Endpoint { kChatCompletions, kCompletions, kResponses, kMessages };

// Why a generation ended (tokenizer-and-chat.md §9). kCancelled: the client went away.
enum class FinishReason { kStop, kLength, kToolCalls, kError, kCancelled };

struct Usage {
  int64_t prompt_tokens = 0;      // the effective prompt, reused part included (§11 "P")
  int64_t cached_tokens = 0;      // reused from a live session or a stored state ("R")
  int64_t completion_tokens = 0;  // generated, EOS excluded ("C")
  int64_t reasoning_tokens = 0;   // of completion_tokens, those before `</think>`
};

struct ToolCallResult {
  std::string id;
  std::string name;
  std::string arguments;  // the JSON text the parser built (official-encoding.md §3.3)
};

struct GenerationResult {
  FinishReason finish = FinishReason::kStop;
  std::string reasoning;
  std::string content;
  std::vector<ToolCallResult> tool_calls;
  std::string text;  // kCompletions: the raw text returned (stop string cut)
  std::optional<std::string> stop_sequence;  // the client stop string that ended it
  std::string error;                         // kError: what went wrong
  Usage usage;
};

struct JobRequest {
  Endpoint endpoint = Endpoint::kChatCompletions;
  chat::Prompt prompt;  // rendered, exact replay applied
  std::string prompt_text;
  std::vector<int32_t> prompt_tokens;
  // Raw completions (/v1/completions) are not parsed into reasoning, content and tool calls.
  bool raw = false;
  chat::ThinkingMode mode = chat::ThinkingMode::kThinking;
  bool tools_active = false;  // DSML structure sampling and stop at the block end
  int64_t max_tokens = 0;     // already clamped to the server's limit
  engine::SamplingParams sampling;
  std::vector<std::string> stop;
  std::string tool_id_prefix = "call_";
  // The test-only forced completion (server_options.h); nullopt for normal sampling.
  std::optional<std::vector<int32_t>> forced_tokens;
};

struct Event {
  enum class Kind {
    kStarted,            // admitted: usage holds the prompt and cached token counts
    kReasoning,          // text
    kContent,            // text (for raw completions: the raw text)
    kToolCallBegin,      // index, id, text = the tool's name
    kToolCallArguments,  // index, text = the next bytes of the arguments JSON
    kToolCallEnd,        // index
    kDone,               // result
    kFailed,             // status, code, text: the request could not be served
  };
  Kind kind = Kind::kContent;
  std::string text;
  int index = -1;
  std::string id;
  Usage usage;
  int status = 0;
  std::string code;  // kFailed: e.g. "context_length_exceeded" (usage.prompt_tokens says why)
  std::shared_ptr<const GenerationResult> result;

  // An event of the text-carrying kinds (deltas, tool-call begin/arguments/end).
  static Event delta(Kind kind, std::string text, int index = -1, std::string id = "") {
    Event e;
    e.kind = kind;
    e.text = std::move(text);
    e.index = index;
    e.id = std::move(id);
    return e;
  }
};

// A queue of events from the scheduler to one handler. push() never blocks.
class EventChannel {
 public:
  void push(Event event) {
    {
      std::lock_guard lock(mutex_);
      events_.push_back(std::move(event));
    }
    ready_.notify_one();
  }
  // The next event, or nullopt when none arrived within `timeout`.
  std::optional<Event> pop(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    if (!ready_.wait_for(lock, timeout, [&] { return !events_.empty(); })) return std::nullopt;
    Event e = std::move(events_.front());
    events_.pop_front();
    return e;
  }

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<Event> events_;
};

struct Job {
  explicit Job(JobRequest r) : request(std::move(r)) {}
  JobRequest request;
  EventChannel events;
  std::atomic<bool> cancelled{false};
  std::chrono::steady_clock::time_point submitted = std::chrono::steady_clock::now();
};

}  // namespace magnetar::server
