// Engine and Session: prefix reuse, checkpoints for diverging prefixes, batched steps, progress
// and cancellation, and session files that refuse foreign, damaged or truncated payloads.
#include "engine/engine.h"

#include <gtest/gtest.h>

#include "tiny_model.h"

namespace magnetar::engine {
namespace {

namespace fs = std::filesystem;

fs::path tiny(const std::string& types, uint64_t seed) {
  return testing::tiny_model(types, seed, /*with_mtp=*/false);
}

using testing::random_tokens;

std::vector<int32_t> concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Logits of a fresh session fed `tokens` in one step.
std::vector<float> fresh_logits(Engine& engine, const std::vector<int32_t>& tokens) {
  std::unique_ptr<Session> s = engine.new_session();
  s->set_tokens(tokens);
  Session* one = s.get();
  engine.step(std::span(&one, 1));
  return {s->logits().begin(), s->logits().end()};
}

class EngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    EngineOptions o;
    o.model = tiny("f32", 5);
    o.prefill_chunk = 16;
    engine_ = new Engine(o);
  }
  static void TearDownTestSuite() { delete engine_; }
  static Engine* engine_;
};
Engine* EngineTest::engine_ = nullptr;

TEST_F(EngineTest, ExtendsAMatchingPrefix) {
  std::vector<int32_t> a = random_tokens(30, 1), b = random_tokens(7, 2);
  std::unique_ptr<Session> s = engine_->new_session();
  EXPECT_EQ(s->set_tokens(a), 30);
  Session* p = s.get();
  engine_->step(std::span(&p, 1));
  EXPECT_EQ(s->processed(), 30);
  EXPECT_EQ(s->set_tokens(concat(a, b)), 7) << "only the new tokens are pending";
  engine_->step(std::span(&p, 1));
  std::vector<float> expected = fresh_logits(*engine_, concat(a, b));
  EXPECT_TRUE(std::equal(expected.begin(), expected.end(), s->logits().begin()));
}

TEST_F(EngineTest, DivergingPrefixResumesFromACheckpointOrRebuilds) {
  std::vector<int32_t> a = random_tokens(20, 3), b = random_tokens(10, 4), c = random_tokens(5, 5);
  std::unique_ptr<Session> s = engine_->new_session();
  Session* p = s.get();
  s->set_tokens(a);
  engine_->step(std::span(&p, 1));
  s->checkpoint();
  s->set_tokens(concat(a, b));
  engine_->step(std::span(&p, 1));
  EXPECT_EQ(s->set_tokens(concat(a, c)), 5) << "resumes from the checkpoint after a";
  engine_->step(std::span(&p, 1));
  std::vector<float> expected = fresh_logits(*engine_, concat(a, c));
  EXPECT_TRUE(std::equal(expected.begin(), expected.end(), s->logits().begin()));
  // No checkpoint covers a shorter prefix of a: the state is rebuilt from the start.
  std::vector<int32_t> shorter(a.begin(), a.begin() + 12);
  EXPECT_EQ(s->set_tokens(shorter), 12);
  engine_->step(std::span(&p, 1));
  expected = fresh_logits(*engine_, shorter);
  EXPECT_TRUE(std::equal(expected.begin(), expected.end(), s->logits().begin()));
}

TEST_F(EngineTest, BatchedStepEqualsSeparateSteps) {
  std::vector<std::vector<int32_t>> prompts = {random_tokens(9, 6), random_tokens(33, 7),
                                               random_tokens(1, 8)};
  std::vector<std::unique_ptr<Session>> sessions;
  std::vector<Session*> ptrs;
  for (const auto& t : prompts) {
    sessions.push_back(engine_->new_session());
    sessions.back()->set_tokens(t);
    ptrs.push_back(sessions.back().get());
  }
  engine_->step(ptrs);
  for (size_t i = 0; i < prompts.size(); ++i) {
    std::vector<float> expected = fresh_logits(*engine_, prompts[i]);
    EXPECT_TRUE(std::equal(expected.begin(), expected.end(), ptrs[i]->logits().begin())) << i;
  }
}

TEST_F(EngineTest, ProgressAndCancellation) {
  std::vector<int32_t> t = random_tokens(70, 9);
  std::unique_ptr<Session> s = engine_->new_session();
  Session* p = s.get();
  s->set_tokens(t);
  std::atomic<bool> cancel{false};
  std::vector<int64_t> seen;
  engine_->step(
      std::span(&p, 1),
      [&](int64_t done, int64_t total) {
        EXPECT_EQ(total, 70);
        seen.push_back(done);
        if (done >= 32) cancel = true;  // from "another thread": the flag is read between chunks
      },
      &cancel);
  EXPECT_EQ(seen, (std::vector<int64_t>{16, 32}));
  EXPECT_EQ(s->pending(), 38) << "cancelled between chunks";
  engine_->step(std::span(&p, 1));
  std::vector<float> expected = fresh_logits(*engine_, t);
  EXPECT_TRUE(std::equal(expected.begin(), expected.end(), s->logits().begin()));
}

TEST_F(EngineTest, SavedSessionsContinueInANewEngine) {
  std::vector<int32_t> a = random_tokens(40, 10), b = random_tokens(6, 11);
  std::unique_ptr<Session> s = engine_->new_session();
  Session* p = s.get();
  s->set_tokens(a);
  engine_->step(std::span(&p, 1));
  std::vector<uint8_t> bytes = s->save();

  EngineOptions o;
  o.model = tiny("f32", 5);
  Engine other(o);  // the same model opened again: a fresh process would see the same
  std::unique_ptr<Session> resumed = other.new_session();
  resumed->load(bytes);
  EXPECT_EQ(resumed->processed(), 40);
  EXPECT_EQ(resumed->set_tokens(concat(a, b)), 6) << "no prefill after loading";
  Session* q = resumed.get();
  other.step(std::span(&q, 1));
  std::vector<float> expected = fresh_logits(*engine_, concat(a, b));
  EXPECT_TRUE(std::equal(expected.begin(), expected.end(), resumed->logits().begin()));
}

TEST_F(EngineTest, RefusesForeignDamagedAndTruncatedSessions) {
  std::unique_ptr<Session> s = engine_->new_session();
  Session* p = s.get();
  s->set_tokens(random_tokens(12, 12));
  engine_->step(std::span(&p, 1));
  const std::vector<uint8_t> good = s->save();
  auto error_of = [&](Engine& engine, std::span<const uint8_t> bytes) {
    std::unique_ptr<Session> target = engine.new_session();
    try {
      target->load(bytes);
    } catch (const SessionError& e) {
      EXPECT_EQ(target->processed(), 0) << "a refused load changes nothing";
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  std::vector<uint8_t> damaged = good;
  damaged[damaged.size() / 2] ^= 0x40;
  EXPECT_NE(error_of(*engine_, damaged).find("damaged"), std::string::npos);
  EXPECT_NE(error_of(*engine_, std::span(good).first(good.size() - 100)).find("truncated"),
            std::string::npos);
  EXPECT_NE(error_of(*engine_, std::span(good).first(10)).find("truncated"), std::string::npos);
  std::vector<uint8_t> not_session(good.size(), 0);
  EXPECT_NE(error_of(*engine_, not_session).find("bad magic"), std::string::npos);
  EngineOptions o;
  o.model = tiny("f32", 6);  // another model: same shapes, other weights
  Engine foreign(o);
  EXPECT_NE(error_of(foreign, good).find("another model"), std::string::npos);
  EXPECT_EQ(error_of(*engine_, good), "accepted");

  // A well-formed, correctly checksummed payload whose shapes do not fit the model.
  SessionData wrong_shape{{}, {}, cpu::make_sequence_state(engine_->config(), false)};
  wrong_shape.state.layers[1].window.pop_back();
  EXPECT_NE(
      error_of(*engine_, encode_session(engine_->identity(), wrong_shape)).find("window size"),
      std::string::npos);
  SessionData too_few{{}, {}, cpu::make_sequence_state(engine_->config(), false)};
  too_few.state.layers.pop_back();
  too_few.state.counters.rows_emitted.pop_back();
  EXPECT_NE(error_of(*engine_, encode_session(engine_->identity(), too_few)).find("layer count"),
            std::string::npos);
}

// Greedy continuation of `s` by n tokens, one decode step each.
std::vector<int32_t> greedy_continue(Engine& engine, Session& s, int n) {
  std::vector<int32_t> out;
  Session* p = &s;
  for (int i = 0; i < n; ++i) {
    engine.step(std::span(&p, 1));
    std::span<const float> l = s.logits();
    int32_t next = static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin());
    out.push_back(next);
    s.append(next);
  }
  return out;
}

TEST_F(EngineTest, SnapshotRestoreContinuesAsIfNeverSnapshotted) {
  std::vector<int32_t> prompt = random_tokens(25, 13);
  std::unique_ptr<Session> s = engine_->new_session();
  s->set_tokens(prompt);
  SessionState snap;
  {
    Session* p = s.get();
    engine_->step(std::span(&p, 1));
    snap = s->snapshot();
  }
  std::vector<int32_t> first = greedy_continue(*engine_, *s, 12);
  s->restore(snap);
  EXPECT_EQ(s->processed(), 25);
  EXPECT_EQ(s->tokens(), prompt);
  std::vector<int32_t> again = greedy_continue(*engine_, *s, 12);
  EXPECT_EQ(first, again);

  std::unique_ptr<Session> never = engine_->new_session();
  never->set_tokens(prompt);
  std::vector<int32_t> reference = greedy_continue(*engine_, *never, 12);
  EXPECT_EQ(first, reference);
  // The snapshot is a copy: the steps after it did not change it.
  EXPECT_EQ(snap.tokens.size(), 25u);
  EXPECT_EQ(snap.sequence->position(), 25);
}

TEST(EngineContext, PrefixesLongerThanTheContextAreRefusedAndChangeNothing) {
  EngineOptions o;
  o.model = tiny("f32", 5);
  o.context = 10;
  Engine engine(o);
  EXPECT_EQ(engine.context(), 10);
  std::unique_ptr<Session> s = engine.new_session();
  std::vector<int32_t> nine = random_tokens(9, 14);
  s->set_tokens(nine);
  EXPECT_THROW(s->set_tokens(random_tokens(11, 15)), ContextOverflow);
  EXPECT_EQ(s->tokens(), nine) << "a refused prefix changes nothing";
  s->append(1);
  EXPECT_THROW(s->append(2), ContextOverflow);
  EXPECT_EQ(s->tokens().size(), 10u);
  o.context = 0;
  EXPECT_EQ(Engine(o).context(), Engine(o).config().n_ctx_train);
}

TEST(EngineBackend, ChoosesAnAvailableBackendAndRefusesUnknownOnes) {
  EngineOptions o;
  o.model = tiny("f32", 5);
  o.backend = "cpu";
  EXPECT_EQ(Engine(o).backend_name(), "cpu");
  o.backend = "auto";
  EXPECT_EQ(Engine(o).backend_name(), available_backends().front());
  o.backend = "tpu";
  try {
    Engine bad(o);
    ADD_FAILURE() << "accepted an unknown backend";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("unknown backend 'tpu'"), std::string::npos);
  }
}

// The prefill chunk is the caller's when given, otherwise the backend's (512 on the CPU); a
// negative one is refused. The chunk in use decides how a long prompt is cut: a 1,100-token prompt
// takes three forward calls at 512 (progress reported after 512, 1,024 and 1,100 tokens).
TEST(EngineChunk, CallersOrTheBackendsChoice) {
  EngineOptions o;
  o.model = tiny("f32", 5);
  o.backend = "cpu";
  o.context = 2048;
  EXPECT_EQ(Engine(o).prefill_chunk(), 512);
  Engine engine(o);
  std::unique_ptr<Session> s = engine.new_session();
  s->set_tokens(random_tokens(1100, 3));
  Session* one = s.get();
  std::vector<int64_t> reports;
  engine.step(std::span(&one, 1), [&](int64_t done, int64_t) { reports.push_back(done); });
  EXPECT_EQ(reports, (std::vector<int64_t>{512, 1024, 1100}));
  o.prefill_chunk = 100;
  EXPECT_EQ(Engine(o).prefill_chunk(), 100);
  o.prefill_chunk = -1;
  EXPECT_THROW(Engine bad(o), std::invalid_argument);
}

}  // namespace
}  // namespace magnetar::engine
