// The scheduler: one thread that owns the engine and the live sessions, and runs every
// generation (continuous batching).
//
// Handlers submit jobs to a bounded queue (a full queue is refused at once, so the client gets a
// 429 instead of an unbounded wait). Each loop iteration admits queued jobs onto idle sessions
// (live_sessions.h decides which session, and how much of it is reused), then advances every
// active job in ONE Engine::step call: a prefill chunk for jobs still reading their prompt, one
// token for jobs decoding. A job admitted while others decode joins them at the next step, and a
// long prompt is fed a chunk per step so it never stalls the decoders. A cancelled job (its
// client went away) is dropped at the next step and its session freed, keeping what it computed.
//
// The state store's hooks (state_store.h) are called at the save points of kv-cache.md §8 and on
// a live miss (§10).
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>

#include "engine/engine.h"
#include "kvcache/tool_id_map.h"
#include "server/job.h"
#include "server/live_sessions.h"
#include "server/metrics.h"
#include "server/state_store.h"

namespace magnetar::server {

struct SchedulerOptions {
  int parallel = 1;          // live sessions
  int max_queue = 64;        // jobs waiting for a session
  int64_t chunk = 512;       // prompt tokens per session per step
  bool exact_replay = true;  // remember sampled tool-call blocks (tool_id_map.h)
};

class Scheduler {
 public:
  Scheduler(engine::Engine& engine, const SchedulerOptions& options, StateStore& store,
            kvcache::ToolIdMap& tools, Metrics& metrics);
  ~Scheduler();  // shutdown()

  enum class Submit { kQueued, kQueueFull, kShuttingDown };
  Submit submit(std::shared_ptr<Job> job);

  // Stops taking jobs; queued jobs fail with 503, running ones finish with an error; live
  // sessions are offered to the store (reason shutdown); the thread ends. Idempotent.
  void shutdown();

  int queue_depth() const;

 private:
  struct Active;
  void run();
  void admit(std::shared_ptr<Job> job);
  void step();
  void advance(Active& a, std::vector<Event>& events);
  void take_token(Active& a, std::vector<Event>& events);
  void finalize(Active& a);
  void fail_before_start(Job& job, int status, const std::string& code, const std::string& why,
                         int64_t prompt_tokens = 0);
  void save(kvcache::SaveReason reason, Slot& slot);
  void publish_queue_metrics();

  engine::Engine& engine_;
  const SchedulerOptions options_;
  StateStore& store_;
  kvcache::ToolIdMap& tools_;
  Metrics& metrics_;
  LiveSessions sessions_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<Job>> queue_;
  bool stopping_ = false;
  int idle_slots_;  // guarded by mutex_: slots the run loop can still fill

  std::vector<std::unique_ptr<Active>> active_;  // scheduler thread only
  std::thread thread_;
};

}  // namespace magnetar::server
