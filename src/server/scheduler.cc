#include "server/scheduler.h"

#include <algorithm>
#include <chrono>

#include "engine/prompt_tokens.h"
#include "server/generation.h"
#include "server/log.h"

namespace magnetar::server {

struct Scheduler::Active {
  std::shared_ptr<Job> job;
  Slot* slot = nullptr;
  std::vector<int32_t> tokens;  // the prompt the session must hold
  int64_t reused = 0;
  std::optional<int64_t> cold_point;  // where a cold save pauses the prefill
  std::optional<int64_t> due_save;    // the continued save point this step may reach
  std::unique_ptr<Generation> gen;
  bool decoding = false;
  bool done = false;
  std::string unevaluated;  // bytes of a final token that ended the generation unevaluated
  std::string source;       // how the prompt was placed (live_sessions.h), for the log
  std::chrono::steady_clock::time_point admitted = std::chrono::steady_clock::now();
};

namespace {

const char* endpoint_name(Endpoint e) {
  switch (e) {
    case Endpoint::kChatCompletions:
      return "chat.completions";
    case Endpoint::kCompletions:
      return "completions";
    case Endpoint::kResponses:
      return "responses";
    case Endpoint::kMessages:
      return "messages";
  }
  return "?";
}

const char* finish_name(FinishReason f) {
  return f == FinishReason::kCancelled ? "cancelled" : openai_finish_reason(f);
}

}  // namespace

Scheduler::Scheduler(engine::Engine& engine, const SchedulerOptions& options, StateStore& store,
                     kvcache::ToolIdMap& tools, Metrics& metrics)
    : engine_(engine),
      options_(options),
      store_(store),
      tools_(tools),
      metrics_(metrics),
      sessions_(engine, options.parallel),
      idle_slots_(options.parallel) {
  publish_queue_metrics();
  thread_ = std::thread([this] { run(); });
}

Scheduler::~Scheduler() { shutdown(); }

Scheduler::Submit Scheduler::submit(std::shared_ptr<Job> job) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return Submit::kShuttingDown;
    if (static_cast<int>(queue_.size()) >= options_.max_queue) return Submit::kQueueFull;
    queue_.push_back(std::move(job));
  }
  wake_.notify_one();
  publish_queue_metrics();
  return Submit::kQueued;
}

void Scheduler::shutdown() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

int Scheduler::queue_depth() const {
  std::lock_guard lock(mutex_);
  return static_cast<int>(queue_.size());
}

void Scheduler::publish_queue_metrics() {
  int depth, idle;
  {
    std::lock_guard lock(mutex_);
    depth = static_cast<int>(queue_.size());
    idle = idle_slots_;
  }
  metrics_.set_queue(depth, options_.parallel - idle, options_.parallel);
}

void Scheduler::run() {
  for (;;) {
    std::vector<std::shared_ptr<Job>> admitted;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] {
        return stopping_ || !active_.empty() || (!queue_.empty() && idle_slots_ > 0);
      });
      if (stopping_) break;
      while (!queue_.empty() && idle_slots_ > 0) {
        admitted.push_back(std::move(queue_.front()));
        queue_.pop_front();
        --idle_slots_;
      }
    }
    for (std::shared_ptr<Job>& job : admitted) admit(std::move(job));
    publish_queue_metrics();
    if (!active_.empty()) step();
  }
  std::deque<std::shared_ptr<Job>> queued;
  {
    std::lock_guard lock(mutex_);
    queued.swap(queue_);
  }
  for (std::shared_ptr<Job>& job : queued) {
    fail_before_start(*job, 503, "", "the server is shutting down");
  }
  for (auto& a : active_) {
    std::vector<Event> events;
    a->gen->stop(FinishReason::kError, "the server is shutting down", events);
    for (Event& e : events) a->job->events.push(std::move(e));
    finalize(*a);
  }
  active_.clear();
  for (int i = 0; i < sessions_.count(); ++i) {
    if (sessions_.slot(i).session->processed() > 0) {
      save(kvcache::SaveReason::kShutdown, sessions_.slot(i));
    }
  }
}

void Scheduler::fail_before_start(Job& job, int status, const std::string& code,
                                  const std::string& why, int64_t prompt_tokens) {
  Event e;
  e.kind = Event::Kind::kFailed;
  e.status = status;
  e.code = code;
  e.text = why;
  e.usage.prompt_tokens = prompt_tokens;
  job.events.push(std::move(e));
}

void Scheduler::admit(std::shared_ptr<Job> job) {
  bool store_consulted = false;  // restore() may have replaced the slot's state
  Slot* slot = nullptr;
  auto give_back_slot = [&] {
    // A restored state no longer matches the slot's decoded text and aliases: recompute them, so
    // that a later placement or evict save sees the state the session really holds.
    if (store_consulted) sessions_.release(*slot, {});
    std::lock_guard lock(mutex_);
    ++idle_slots_;
  };
  if (job->cancelled) {
    metrics_.count_cancelled();
    give_back_slot();
    return;
  }
  JobRequest& r = job->request;
  std::optional<Placement> placement = sessions_.place(r.prompt, r.prompt_text, r.prompt_tokens);
  if (!placement) {  // cannot happen: an idle slot was counted for this job
    fail_before_start(*job, 503, "", "no live session is free");
    give_back_slot();
    return;
  }
  auto a = std::make_unique<Active>();
  a->job = job;
  a->slot = slot = placement->slot;
  a->tokens = std::move(placement->tokens);
  a->reused = placement->reused;
  std::string source = source_name(placement->source);
  engine::Session& session = *a->slot->session;
  if (placement->source == Placement::Source::kNone) {
    if (session.processed() > 0) save(kvcache::SaveReason::kEvict, *a->slot);
    std::optional<size_t> covered;
    store_consulted = true;
    try {
      covered = store_.restore(r.prompt_text, session);
    } catch (const std::exception& e) {
      log("state store: restore failed: {}", e.what());
    }
    if (covered) {
      std::optional<std::vector<int32_t>> rest =
          engine::prompt_tokens_from(engine_.tokenizer(), r.prompt, *covered);
      if (rest) {
        std::span<const int32_t> held = a->slot->processed();
        a->tokens.assign(held.begin(), held.end());
        a->tokens.insert(a->tokens.end(), rest->begin(), rest->end());
        a->reused = static_cast<int64_t>(held.size());
        source = "stored";
      }
    }
  }
  const int64_t n = static_cast<int64_t>(a->tokens.size());
  if (n >= engine_.context()) {
    fail_before_start(*job, 400, "context_length_exceeded",
                      "the prompt has " + std::to_string(n) + " tokens, but the context size is " +
                          std::to_string(engine_.context()) + " tokens",
                      n);
    give_back_slot();
    return;
  }
  r.max_tokens = std::clamp<int64_t>(r.max_tokens, 0, engine_.context() - n);
  try {
    a->gen = std::make_unique<Generation>(r, engine_.tokenizer(), tools_);
  } catch (const std::invalid_argument& e) {
    fail_before_start(*job, 400, "", e.what());
    give_back_slot();
    return;
  }
  session.set_tokens(std::span<const int32_t>(a->tokens).first(a->reused));
  if (placement->source == Placement::Source::kNone && a->reused == 0) {
    a->cold_point = store_.cold_save_point(a->tokens);
  }
  a->slot->busy = true;
  sessions_.touch(*a->slot);
  metrics_.count_placement(source);
  a->source = source;
  Event started;
  started.kind = Event::Kind::kStarted;
  started.usage.prompt_tokens = n;
  started.usage.cached_tokens = a->reused;
  job->events.push(std::move(started));
  active_.push_back(std::move(a));
}

void Scheduler::step() {
  std::vector<engine::Session*> batch;
  std::vector<Active*> stepped;
  int64_t prefill_tokens = 0, decode_tokens = 0;
  for (auto& owned : active_) {
    Active& a = *owned;
    if (a.job->cancelled) {
      std::vector<Event> events;
      a.gen->stop(FinishReason::kCancelled, "", events);
      metrics_.count_cancelled();
      finalize(a);
      continue;
    }
    engine::Session& s = *a.slot->session;
    const int64_t processed = s.processed();
    a.due_save = a.gen->in_tool_block() ? std::nullopt : store_.continued_save_point(processed);
    if (!a.decoding) {
      int64_t target = std::min<int64_t>(a.tokens.size(), processed + options_.chunk);
      if (a.cold_point && processed < *a.cold_point) target = std::min(target, *a.cold_point);
      if (a.due_save && *a.due_save < target) target = *a.due_save;
      s.set_tokens(std::span<const int32_t>(a.tokens).first(target));
      prefill_tokens += s.pending();
    } else {
      decode_tokens += s.pending();
    }
    if (s.pending() > 0) batch.push_back(&s);
    stepped.push_back(&a);
  }
  if (!batch.empty()) {
    auto start = std::chrono::steady_clock::now();
    try {
      engine_.step(batch);
    } catch (const std::exception& e) {
      log("engine step failed: {}", e.what());
      for (Active* a : stepped) {
        std::vector<Event> events;
        a->gen->stop(FinishReason::kError, std::string("the engine failed: ") + e.what(), events);
        for (Event& ev : events) a->job->events.push(std::move(ev));
        a->slot->session->reset();
        finalize(*a);
      }
      stepped.clear();
    }
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    metrics_.count_step(prefill_tokens, decode_tokens, static_cast<int64_t>(batch.size()), seconds);
  }
  for (Active* a : stepped) {
    if (a->done) continue;
    std::vector<Event> events;
    advance(*a, events);
    for (Event& e : events) a->job->events.push(std::move(e));
    if (a->gen->finished()) finalize(*a);
  }
  std::erase_if(active_, [](const std::unique_ptr<Active>& a) { return a->done; });
}

void Scheduler::advance(Active& a, std::vector<Event>& events) {
  engine::Session& s = *a.slot->session;
  if (a.due_save && s.processed() == *a.due_save) save(kvcache::SaveReason::kContinued, *a.slot);
  if (!a.decoding) {
    if (a.cold_point && s.processed() == *a.cold_point) {
      save(kvcache::SaveReason::kCold, *a.slot);
      a.cold_point.reset();
    }
    if (s.processed() < static_cast<int64_t>(a.tokens.size())) return;
    a.decoding = true;
    if (a.job->request.max_tokens == 0) {
      a.gen->stop(FinishReason::kLength, "", events);
      return;
    }
  }
  take_token(a, events);
}

void Scheduler::take_token(Active& a, std::vector<Event>& events) {
  engine::Session& s = *a.slot->session;
  if (s.logits().empty()) {
    a.gen->stop(FinishReason::kError, "no logits to sample from", events);
    return;
  }
  const int32_t token = a.gen->choose(s.logits());
  bool more = a.gen->accept(token, events);
  if (more) {
    try {
      s.append(token);
    } catch (const engine::ContextOverflow&) {
      a.gen->stop(FinishReason::kLength, "", events);
      more = false;
    }
  }
  if (!more && token != engine_.tokenizer().eos_id()) {
    a.unevaluated = engine_.tokenizer().token_bytes(token);
  }
}

void Scheduler::finalize(Active& a) {
  a.done = true;
  auto result = std::make_shared<GenerationResult>(a.gen->result());
  result->usage.prompt_tokens = static_cast<int64_t>(a.tokens.size());
  result->usage.cached_tokens = a.reused;
  const JobRequest& r = a.job->request;
  std::string dsml = a.gen->sampled_dsml();
  if (options_.exact_replay && !result->tool_calls.empty() && !dsml.empty()) {
    std::vector<std::string> ids;
    for (const ToolCallResult& c : result->tool_calls) ids.push_back(c.id);
    tools_.remember(ids, dsml);
  }
  std::vector<std::string> aliases;
  const bool clean_end = (result->finish == FinishReason::kStop && !result->stop_sequence) ||
                         result->finish == FinishReason::kToolCalls;
  if (!r.raw && r.mode == chat::ThinkingMode::kThinking && clean_end &&
      a.gen->parse_error().empty()) {
    aliases = visible_aliases(r.prompt_text, r.tools_active, result->content, dsml, a.unevaluated);
  }
  if (!a.gen->parse_error().empty()) log("completion not parsed: {}", a.gen->parse_error());
  const auto now = std::chrono::steady_clock::now();
  log_request(
      "{} session {}: prompt {} ({} reused, {}), {} generated, {}, queued {:.2f} s, ran {:.2f} s",
      endpoint_name(r.endpoint), a.slot->index, result->usage.prompt_tokens,
      result->usage.cached_tokens, a.source, result->usage.completion_tokens,
      finish_name(result->finish),
      std::chrono::duration<double>(a.admitted - a.job->submitted).count(),
      std::chrono::duration<double>(now - a.admitted).count());
  sessions_.release(*a.slot, std::move(aliases));
  metrics_.count_usage(result->usage.prompt_tokens, result->usage.cached_tokens,
                       result->usage.completion_tokens);
  {
    std::lock_guard lock(mutex_);
    ++idle_slots_;
  }
  publish_queue_metrics();  // before the client hears of it, so /metrics agrees with it
  Event done;
  done.kind = Event::Kind::kDone;
  done.usage = result->usage;
  done.result = std::move(result);
  a.job->events.push(std::move(done));
}

void Scheduler::save(kvcache::SaveReason reason, Slot& slot) {
  using kvcache::KeyKind;
  try {
    if (reason == kvcache::SaveReason::kEvict || reason == kvcache::SaveReason::kShutdown) {
      // An idle slot: its visible transcript, when it has one, is what the client will replay.
      if (!slot.aliases.empty()) {
        store_.save(reason, *slot.session, slot.aliases.front(), KeyKind::kThinkingVisible);
      } else {
        store_.save(reason, *slot.session, slot.decoded, KeyKind::kTokenText);
      }
      return;
    }
    std::string text = engine_.tokenizer().decode(slot.processed());
    store_.save(reason, *slot.session, text, KeyKind::kTokenText);
  } catch (const std::exception& e) {
    log("state store: {} save failed: {}", kvcache::reason_name(reason), e.what());
  }
}

}  // namespace magnetar::server
