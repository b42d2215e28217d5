// The scheduler on the tiny model: jobs run to completion through the real engine, later turns
// reuse the live session (token prefix, rendered bytes, visible transcript, exact tool replay),
// concurrent jobs share engine steps, cancellation and the queue limit work, the context is
// enforced, and the state-store hooks are called at kv-cache.md's save points.
#include "server/scheduler.h"

#include <gtest/gtest.h>

#include <regex>

#include "server/openai_api.h"
#include "tiny_model.h"

namespace magnetar::server {
namespace {

using namespace std::chrono_literals;
using kvcache::KeyKind;
using kvcache::SaveReason;

class SchedulerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    engine::EngineOptions o;
    o.model = testing::tiny_model("q2", 11, /*with_mtp=*/false);
    o.backend = "cpu";
    o.context = 1024;
    o.prefill_chunk = 16;
    engine_ = new engine::Engine(o);
  }
  static void TearDownTestSuite() { delete engine_; }

  static const tokenizer::Tokenizer& tok() { return engine_->tokenizer(); }

  static ApiContext api() {
    ApiContext c;
    c.tokenizer = &tok();
    c.context = engine_->context();
    c.default_max_tokens = 64;
    c.max_tokens_limit = 256;
    c.models.id = "deepseek-v4-flash";
    return c;
  }

  // A chat job for `body`, forced to generate `forced` (then EOS) when it is not empty.
  static std::shared_ptr<Job> job(const Json& body, const std::string& forced = "") {
    JobRequest r = prepare_chat_completion(body, api()).job;
    if (!forced.empty()) r.forced_tokens = tok().encode(forced, /*allow_special=*/true);
    return std::make_shared<Job>(std::move(r));
  }

  struct Outcome {
    std::vector<Event> events;
    std::optional<Event> started;
    std::shared_ptr<const GenerationResult> result;
    std::optional<Event> failure;
  };

  // Reads a job's events until it is done or failed.
  static Outcome wait(Job& j) {
    Outcome o;
    const auto deadline = std::chrono::steady_clock::now() + 120s;
    while (std::chrono::steady_clock::now() < deadline) {
      std::optional<Event> e = j.events.pop(100ms);
      if (!e) continue;
      if (e->kind == Event::Kind::kStarted) o.started = *e;
      if (e->kind == Event::Kind::kFailed) {
        o.failure = *e;
        return o;
      }
      if (e->kind == Event::Kind::kDone) {
        o.result = e->result;
        return o;
      }
      o.events.push_back(std::move(*e));
    }
    ADD_FAILURE() << "the job did not finish";
    return o;
  }

  static int64_t forced_length(const std::string& text) {
    return static_cast<int64_t>(tok().encode(text, true).size());
  }

  static engine::Engine* engine_;
};
engine::Engine* SchedulerTest::engine_ = nullptr;

Json user_turn(const std::string& text) { return {{"role", "user"}, {"content", text}}; }

// A metric's value in the Prometheus text (the first line starting with `name`).
double metric(const Metrics& m, const std::string& name) {
  std::string text = m.render();
  std::smatch match;
  if (!std::regex_search(text, match, std::regex("\n" + name + " ([0-9.e+-]+)\n"))) {
    ADD_FAILURE() << name << " missing";
    return 0;
  }
  return std::stod(match[1]);
}

TEST_F(SchedulerTest, RunsJobsAndReusesTheLiveSessionOnTheNextTurn) {
  NullStateStore store;
  kvcache::ToolIdMap tools;
  Metrics metrics;
  Scheduler s(*engine_, {.parallel = 1, .max_queue = 4, .chunk = 16}, store, tools, metrics);
  Json first = {{"messages", {user_turn("Hello, how is the weather today?")}}, {"think", false}};
  auto a = job(first, "It is sunny and warm.");
  const int64_t prompt_a = static_cast<int64_t>(a->request.prompt_tokens.size());
  ASSERT_EQ(s.submit(a), Scheduler::Submit::kQueued);
  Outcome oa = wait(*a);
  ASSERT_TRUE(oa.started && oa.result);
  EXPECT_EQ(oa.started->usage.prompt_tokens, prompt_a);
  EXPECT_EQ(oa.started->usage.cached_tokens, 0);
  std::string streamed;
  for (const Event& e : oa.events) {
    if (e.kind == Event::Kind::kContent) streamed += e.text;
  }
  EXPECT_EQ(streamed, "It is sunny and warm.");
  EXPECT_EQ(oa.result->content, streamed);
  EXPECT_EQ(oa.result->finish, FinishReason::kStop);
  EXPECT_EQ(oa.result->usage.completion_tokens, forced_length("It is sunny and warm."));
  EXPECT_EQ(oa.result->usage.prompt_tokens, prompt_a);

  // The next turn holds the first one: the whole live state is reused (EOS was never evaluated,
  // every other generated token was).
  Json second = {{"messages",
                  {user_turn("Hello, how is the weather today?"),
                   {{"role", "assistant"}, {"content", "It is sunny and warm."}},
                   user_turn("And tomorrow?")}},
                 {"think", false}};
  auto b = job(second, "Rain.");
  ASSERT_EQ(s.submit(b), Scheduler::Submit::kQueued);
  Outcome ob = wait(*b);
  ASSERT_TRUE(ob.started && ob.result);
  EXPECT_EQ(ob.started->usage.cached_tokens, prompt_a + forced_length("It is sunny and warm."));
  EXPECT_EQ(ob.result->usage.cached_tokens, ob.started->usage.cached_tokens);
  EXPECT_EQ(ob.result->content, "Rain.");
  EXPECT_EQ(metric(metrics, "magnetar_cached_prompt_tokens_total"),
            static_cast<double>(ob.started->usage.cached_tokens));
}

TEST_F(SchedulerTest, ThinkingTurnsContinueFromTheVisibleTranscript) {
  NullStateStore store;
  kvcache::ToolIdMap tools;
  Metrics metrics;
  Scheduler s(*engine_, {.parallel = 2, .max_queue = 4, .chunk = 16}, store, tools, metrics);
  const std::string forced = "The user greets me.</think>Hello!";
  auto a = job({{"messages", {user_turn("Hi")}}}, forced);
  const int64_t prompt_a = static_cast<int64_t>(a->request.prompt_tokens.size());
  s.submit(a);
  Outcome oa = wait(*a);
  ASSERT_TRUE(oa.result);
  EXPECT_EQ(oa.result->reasoning, "The user greets me.");
  EXPECT_EQ(oa.result->content, "Hello!");
  // The client sends the answer back without its reasoning (the renderer drops it anyway).
  auto b =
      job({{"messages",
            {user_turn("Hi"), {{"role", "assistant"}, {"content", "Hello!"}}, user_turn("Bye")}}},
          "Ok.</think>Bye!");
  s.submit(b);
  Outcome ob = wait(*b);
  ASSERT_TRUE(ob.started);
  EXPECT_EQ(ob.started->usage.cached_tokens, prompt_a + forced_length(forced))
      << "the hidden reasoning stays in the state";
  EXPECT_NE(metrics.render().find("magnetar_cache_placements_total{source=\"visible_prefix\"} 1"),
            std::string::npos);
}

TEST_F(SchedulerTest, ToolCallTurnsAreReplayedExactly) {
  NullStateStore store;
  kvcache::ToolIdMap tools;
  Metrics metrics;
  Scheduler s(*engine_, {.parallel = 1, .max_queue = 4, .chunk = 16}, store, tools, metrics);
  Json tools_json = Json::parse(R"([{"type": "function", "function": {"name": "get_weather",
      "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])");
  // The model writes `2.0` where a canonical rendering would write `2`: only exact replay keeps
  // the live state a prefix of the next prompt.
  const std::string forced =
      "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_weather\">\n"
      "<｜DSML｜parameter name=\"days\" string=\"false\">2.0</｜DSML｜parameter>\n"
      "<｜DSML｜parameter name=\"city\" string=\"true\">Paris</｜DSML｜parameter>\n"
      "</｜DSML｜invoke>\n</｜DSML｜tool_calls>";
  Json first = {
      {"messages", {user_turn("Weather in Paris?")}}, {"tools", tools_json}, {"think", false}};
  auto a = job(first, forced);
  const int64_t prompt_a = static_cast<int64_t>(a->request.prompt_tokens.size());
  s.submit(a);
  Outcome oa = wait(*a);
  ASSERT_TRUE(oa.result);
  ASSERT_EQ(oa.result->finish, FinishReason::kToolCalls);
  ASSERT_EQ(oa.result->tool_calls.size(), 1u);
  const ToolCallResult& call = oa.result->tool_calls[0];
  EXPECT_EQ(call.arguments, R"({"days": 2.0, "city": "Paris"})");
  Json second = first;
  second["messages"].push_back(
      {{"role", "assistant"},
       {"content", ""},
       {"tool_calls",
        {{{"id", call.id},
          {"type", "function"},
          {"function", {{"name", call.name}, {"arguments", call.arguments}}}}}}});
  second["messages"].push_back({{"role", "tool"}, {"tool_call_id", call.id}, {"content", "sunny"}});
  auto b = job(second, "Sunny.");
  EXPECT_NE(b->request.prompt_text.find(forced), std::string::npos) << "the sampled bytes";
  s.submit(b);
  Outcome ob = wait(*b);
  ASSERT_TRUE(ob.started);
  // Generation stopped at the closing tag without evaluating its last token.
  EXPECT_EQ(ob.started->usage.cached_tokens, prompt_a + forced_length(forced) - 1);
}

TEST_F(SchedulerTest, ConcurrentJobsShareStepsAndCancellationFreesTheSession) {
  NullStateStore store;
  kvcache::ToolIdMap tools;
  Metrics metrics;
  Scheduler s(*engine_, {.parallel = 3, .max_queue = 8, .chunk = 16}, store, tools, metrics);
  std::vector<std::shared_ptr<Job>> jobs;
  for (int i = 0; i < 3; ++i) {
    jobs.push_back(job({{"messages", {user_turn("Story number " + std::to_string(i))}},
                        {"max_tokens", 12},
                        {"think", false},
                        {"seed", i + 1}}));
    ASSERT_EQ(s.submit(jobs.back()), Scheduler::Submit::kQueued);
  }
  for (auto& j : jobs) {
    Outcome o = wait(*j);
    ASSERT_TRUE(o.result);
    EXPECT_GT(o.result->usage.completion_tokens, 0);
    EXPECT_LE(o.result->usage.completion_tokens, 12);
  }
  const double steps = metric(metrics, "magnetar_engine_steps_total");
  const double items = metric(metrics, "magnetar_engine_batch_items_total");
  EXPECT_GT(items / steps, 1.5) << "sessions decode together";

  auto endless = job({{"messages", {user_turn("Go on forever")}},
                      {"max_tokens", 200},
                      {"think", false},
                      {"temperature", 0}});
  s.submit(endless);
  for (int seen = 0; seen < 3;) {
    std::optional<Event> e = endless->events.pop(10s);
    ASSERT_TRUE(e);
    seen += e->kind != Event::Kind::kStarted;
    ASSERT_NE(e->kind, Event::Kind::kDone) << "finished before it was cancelled";
  }
  endless->cancelled = true;
  Outcome o = wait(*endless);
  ASSERT_TRUE(o.result);
  EXPECT_EQ(o.result->finish, FinishReason::kCancelled);
  EXPECT_LT(o.result->usage.completion_tokens, 200);
  EXPECT_EQ(metric(metrics, "magnetar_generations_cancelled_total"), 1);
  EXPECT_EQ(metric(metrics, "magnetar_busy_sessions"), 0);
}

TEST_F(SchedulerTest, QueueLimitContextAndShutdown) {
  NullStateStore store;
  kvcache::ToolIdMap tools;
  Metrics metrics;
  auto s = std::make_unique<Scheduler>(*engine_, SchedulerOptions{.parallel = 1, .max_queue = 1},
                                       store, tools, metrics);
  auto long_job = [&] {
    return job({{"messages", {user_turn("Talk")}}, {"max_tokens", 200}, {"think", false}});
  };
  auto a = long_job(), b = long_job(), c = long_job();
  EXPECT_EQ(s->submit(a), Scheduler::Submit::kQueued);
  ASSERT_TRUE(a->events.pop(30s)) << "a is admitted";
  EXPECT_EQ(s->submit(b), Scheduler::Submit::kQueued);
  EXPECT_EQ(s->submit(c), Scheduler::Submit::kQueueFull);
  // Shutdown: the running job ends with an error, the queued one fails with 503.
  s->shutdown();
  Outcome oa = wait(*a), ob = wait(*b);
  ASSERT_TRUE(oa.result);
  EXPECT_EQ(oa.result->finish, FinishReason::kError);
  ASSERT_TRUE(ob.failure);
  EXPECT_EQ(ob.failure->status, 503);
  EXPECT_EQ(s->submit(c), Scheduler::Submit::kShuttingDown);

  // A prompt longer than the context fails at admission (the handler's check was bypassed), and
  // a prompt that fits gets at most the context's remaining tokens.
  Scheduler t(*engine_, {.parallel = 1, .max_queue = 4}, store, tools, metrics);
  JobRequest big =
      prepare_chat_completion({{"messages", {user_turn("x")}}, {"think", false}}, api()).job;
  std::vector<int32_t> filler = testing::random_tokens(engine_->context() - 2, 5);
  big.prompt_tokens.insert(big.prompt_tokens.begin() + 1, filler.begin(), filler.end());
  const int64_t n = static_cast<int64_t>(big.prompt_tokens.size());
  auto too_long = std::make_shared<Job>(big);
  t.submit(too_long);
  Outcome o = wait(*too_long);
  ASSERT_TRUE(o.failure);
  EXPECT_EQ(o.failure->status, 400);
  EXPECT_EQ(o.failure->code, "context_length_exceeded");
  EXPECT_EQ(o.failure->usage.prompt_tokens, n);
  big.prompt_tokens.resize(engine_->context() - 3);
  big.max_tokens = 100;
  auto fits = std::make_shared<Job>(big);
  t.submit(fits);
  Outcome f = wait(*fits);
  ASSERT_TRUE(f.result);
  EXPECT_EQ(f.result->usage.completion_tokens + f.result->usage.prompt_tokens, engine_->context())
      << "max_tokens lowered to the context left";
  EXPECT_EQ(f.result->finish, FinishReason::kLength);
}

// A state store in memory: records every call and serves restores from its saves.
class RecordingStore final : public StateStore {
 public:
  struct Save {
    SaveReason reason;
    std::string key;
    int64_t tokens;
    std::vector<uint8_t> bytes;
  };
  std::vector<Save> saves;
  int restores = 0;
  int64_t cold = 0, interval = 0;

  std::optional<size_t> restore(std::string_view prompt, engine::Session& session) override {
    const Save* best = nullptr;
    for (const Save& s : saves) {
      if (prompt.starts_with(s.key) && (!best || s.key.size() > best->key.size())) best = &s;
    }
    if (!best) return std::nullopt;
    ++restores;
    session.load(best->bytes);
    return best->key.size();
  }
  std::optional<int64_t> cold_save_point(std::span<const int32_t> prompt) override {
    if (cold == 0) return std::nullopt;
    return std::min<int64_t>(cold, prompt.size());
  }
  std::optional<int64_t> continued_save_point(int64_t processed) override {
    if (interval == 0) return std::nullopt;
    return (processed / interval + 1) * interval;
  }
  void save(SaveReason reason, const engine::Session& session, std::string_view key,
            KeyKind) override {
    saves.push_back({reason, std::string(key), session.processed(), session.save()});
  }
  void recall_tool_ids(const std::vector<std::string>&) override {}
};

TEST_F(SchedulerTest, StateStoreHooksAtTheSavePoints) {
  RecordingStore store;
  store.cold = 9;
  store.interval = 32;
  kvcache::ToolIdMap tools;
  Metrics metrics;
  Scheduler s(*engine_, {.parallel = 1, .max_queue = 4, .chunk = 16}, store, tools, metrics);
  const std::string answer =
      "A long answer that goes on for a while so that the session passes the interval of "
      "thirty two tokens, and then it stops right here.";
  Json first = {{"messages", {user_turn("Tell me something, please.")}}, {"think", false}};
  auto a = job(first, answer);
  const std::vector<int32_t> prompt_a = a->request.prompt_tokens;
  s.submit(a);
  ASSERT_TRUE(wait(*a).result);
  const int64_t live_a = static_cast<int64_t>(prompt_a.size()) + forced_length(answer);
  ASSERT_GT(live_a, 32);
  ASSERT_LT(live_a, 64);
  ASSERT_EQ(store.saves.size(), 2u);
  EXPECT_EQ(store.saves[0].reason, SaveReason::kCold);
  EXPECT_EQ(store.saves[0].tokens, 9);
  EXPECT_EQ(store.saves[0].key, tok().decode(std::span<const int32_t>(prompt_a).first(9)));
  EXPECT_EQ(store.saves[1].reason, SaveReason::kContinued);
  EXPECT_EQ(store.saves[1].tokens, 32);

  // Another conversation takes the only session: the first one is saved (evict) first.
  auto b = job({{"messages", {user_turn("Unrelated")}}, {"think", false}}, "Yes.");
  s.submit(b);
  ASSERT_TRUE(wait(*b).result);
  ASSERT_GE(store.saves.size(), 3u);
  EXPECT_EQ(store.saves[2].reason, SaveReason::kEvict);
  EXPECT_EQ(store.saves[2].tokens, live_a);
  EXPECT_EQ(store.saves[2].key, tok().decode(std::span<const int32_t>(prompt_a)) + answer);

  // The first conversation comes back: a live miss, served from the store.
  Json third = first;
  third["messages"].push_back({{"role", "assistant"}, {"content", answer}});
  third["messages"].push_back(user_turn("Thanks."));
  auto c = job(third, "Welcome.");
  s.submit(c);
  Outcome oc = wait(*c);
  ASSERT_TRUE(oc.started);
  EXPECT_EQ(store.restores, 1);
  EXPECT_EQ(oc.started->usage.cached_tokens, live_a);
  EXPECT_EQ(oc.result->content, "Welcome.");
  EXPECT_EQ(store.saves.back().reason, SaveReason::kEvict) << "b was saved before the restore";
}

}  // namespace
}  // namespace magnetar::server
