// The ds4-bench measurement (engine/bench.h) on the tiny model and the CPU backend: the frontier
// list, the CSV form, incremental prefill, state bytes, and decode probes that leave no trace.
#include "engine/bench.h"

#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "tiny_model.h"

namespace magnetar::engine {
namespace {

using testing::random_tokens;

BenchOptions sweep(int64_t start, int64_t max, int64_t incr, double mul = 1.0) {
  BenchOptions o;
  o.ctx_start = start;
  o.ctx_max = max;
  o.step_incr = incr;
  o.step_mul = mul;
  return o;
}

TEST(BenchFrontiers, LinearStepsEndAtTheMaximum) {
  EXPECT_EQ(bench_frontiers(sweep(2048, 8192, 2048)),
            (std::vector<int64_t>{2048, 4096, 6144, 8192}));
  EXPECT_EQ(bench_frontiers(sweep(2048, 5000, 2048)), (std::vector<int64_t>{2048, 4096, 5000}));
  EXPECT_EQ(bench_frontiers(sweep(100, 100, 7)), (std::vector<int64_t>{100}));
}

TEST(BenchFrontiers, MultiplicativeStepsRoundUpAndAlwaysAdvance) {
  EXPECT_EQ(bench_frontiers(sweep(1000, 10000, 2048, 2.0)),
            (std::vector<int64_t>{1000, 2000, 4000, 8000, 10000}));
  // ceil(3 × 1.5) = 5, ceil(5 × 1.5) = 8, ceil(8 × 1.5) = 12, then the maximum.
  EXPECT_EQ(bench_frontiers(sweep(3, 13, 1, 1.5)), (std::vector<int64_t>{3, 5, 8, 12, 13}));
  // A factor too small to move a frontier still moves it by one token.
  EXPECT_EQ(bench_frontiers(sweep(10, 13, 1, 1.01)), (std::vector<int64_t>{10, 11, 12, 13}));
}

TEST(BenchFrontiers, RefusesOptionsThatMakeNoSweep) {
  auto message = [](const BenchOptions& o) {
    try {
      validate_bench_options(o);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_EQ(message(sweep(4096, 2048, 1)), "--ctx-start must be <= --ctx-max");
  EXPECT_EQ(message(sweep(1, 10, 1, 0.5)), "--step-mul must be >= 1");
  EXPECT_EQ(message(sweep(1, 10, 0)), "--step-incr must be positive");
  EXPECT_EQ(message(sweep(0, 10, 1)), "--ctx-start must be positive");
  BenchOptions o = sweep(1, 10, 1);
  o.gen_tokens = 0;
  EXPECT_EQ(message(o), "--gen-tokens must be positive");
  o = sweep(1, 10, 1);
  o.batch = 0;
  EXPECT_EQ(message(o), "--batch must be positive");
  EXPECT_EQ(message(sweep(1, 10, 0, 1.5)), "accepted");  // the increment is unused then
}

TEST(BenchCsv, HeaderAndRowsAsDs4BenchPrintsThem) {
  EXPECT_EQ(bench_csv_header(false),
            "ctx_tokens,prefill_tokens,prefill_tps,gen_tokens,gen_tps,kvcache_bytes");
  EXPECT_EQ(bench_csv_header(true),
            "ctx_tokens,prefill_tokens,prefill_tps,gen_tokens,gen_tps,kvcache_bytes,batch");
  BenchRow r;
  r.ctx_tokens = 4096;
  r.prefill_tokens = 2048;
  r.prefill_seconds = 0.5;
  r.gen_tokens = 128;
  r.gen_seconds = 3.0;
  r.kvcache_bytes = 123456789;
  EXPECT_EQ(bench_csv_row(r, false), "4096,2048,4096.00,128,42.67,123456789");
  r.batch = 4;  // aggregate rates: 4 sessions each prefilled 2048 and decoded 128 tokens
  EXPECT_EQ(bench_csv_row(r, true), "4096,2048,16384.00,128,170.67,123456789,4");
  r.prefill_seconds = 0;
  EXPECT_EQ(r.prefill_tps(), 0.0);
}

TEST(BenchArgmax, SkipsTheExcludedTokenAndPrefersTheLowestIdOnTies) {
  const std::vector<float> logits = {0.5f, 2.0f, 3.0f, 3.0f, 1.0f};
  EXPECT_EQ(argmax_excluding(logits, 2), 3);
  EXPECT_EQ(argmax_excluding(logits, 0), 2);
  EXPECT_EQ(argmax_excluding(logits, -1), 2);
  EXPECT_THROW(argmax_excluding(std::vector<float>{1.0f}, 0), std::logic_error);
}

TEST(BenchLogits, StddevOfSaneLogitsAndErrorsForDegenerateOnes) {
  // Values 1..4: mean 2.5, variance (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25.
  EXPECT_NEAR(checked_logits_stddev(std::vector<float>{1, 2, 3, 4}, 8), std::sqrt(1.25), 1e-12);
  EXPECT_THROW(checked_logits_stddev(std::vector<float>{1, NAN, 3}, 8), std::runtime_error);
  EXPECT_THROW(checked_logits_stddev(std::vector<float>{1, INFINITY}, 8), std::runtime_error);
  EXPECT_THROW(checked_logits_stddev(std::vector<float>{2, 2, 2}, 8), std::runtime_error);
  EXPECT_THROW(checked_logits_stddev(std::vector<float>{}, 8), std::runtime_error);
}

class BenchTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    EngineOptions o;
    o.model = testing::tiny_model("f32", 5, /*with_mtp=*/false);
    o.backend = "cpu";
    o.context = 64;
    o.prefill_chunk = 5;  // frontiers fall inside chunks
    engine_ = new Engine(o);
  }
  static void TearDownTestSuite() { delete engine_; }
  static Engine* engine_;

  // The greedy non-EOS continuation of `prefix`, decoded one token at a time on a fresh session:
  // the probe computed without the bench.
  static std::vector<int32_t> greedy(const std::vector<int32_t>& prefix, int64_t n) {
    std::unique_ptr<Session> s = engine_->new_session();
    s->set_tokens(prefix);
    Session* one[] = {s.get()};
    engine_->step(one);
    std::vector<int32_t> out;
    for (int64_t i = 0; i < n; ++i) {
      out.push_back(argmax_excluding(s->logits(), engine_->tokenizer().eos_id()));
      s->append(out.back());
      engine_->step(one);
    }
    return out;
  }
};
Engine* BenchTest::engine_ = nullptr;

TEST_F(BenchTest, PromptTokensRepeatTheTextUpToTheCount) {
  const tokenizer::Tokenizer& tok = engine_->tokenizer();
  const std::vector<int32_t> once = tok.encode("The quick brown fox.");
  ASSERT_GT(once.size(), 2u);
  const std::vector<int32_t> prompt =
      bench_prompt(tok, "The quick brown fox.", 2 * once.size() + 1);
  ASSERT_EQ(prompt.size(), 2 * once.size() + 1);
  for (size_t i = 0; i < prompt.size(); ++i) EXPECT_EQ(prompt[i], once[i % once.size()]) << i;
  // Control-token text is plain text, as in ds4-bench's prompt file.
  EXPECT_EQ(bench_prompt(tok, "<think>", 3).front(), tok.encode("<think>", false).front());
  EXPECT_NE(bench_prompt(tok, "<think>", 3).front(), *tok.token_id("<think>"));
  EXPECT_THROW(bench_prompt(tok, "", 3), std::invalid_argument);

  const std::vector<int32_t> random = bench_random_prompt(tok, 500, 9);
  ASSERT_EQ(random.size(), 500u);
  EXPECT_EQ(random, bench_random_prompt(tok, 500, 9));
  for (int32_t t : random) EXPECT_FALSE(tok.is_added(t)) << t;
}

TEST_F(BenchTest, RowsFollowTheFrontiersAndTheProbesLeaveNoTrace) {
  BenchOptions o = sweep(12, 40, 10);  // 12, 22, 32, 40
  o.gen_tokens = 6;
  const std::vector<int32_t> prompt = random_tokens(40, 21);
  Bench bench(*engine_, o, prompt);
  ASSERT_EQ(bench.frontiers(), (std::vector<int64_t>{12, 22, 32, 40}));
  int64_t prefilled = 0;
  uint64_t previous_bytes = 0;
  while (!bench.done()) {
    const BenchRow row = bench.next();
    SCOPED_TRACE("frontier " + std::to_string(row.ctx_tokens));
    prefilled += row.prefill_tokens;
    EXPECT_EQ(prefilled, row.ctx_tokens);  // incremental prefill: only the new tokens
    EXPECT_EQ(row.gen_tokens, 6);
    EXPECT_GT(row.prefill_seconds, 0);
    EXPECT_GT(row.gen_seconds, 0);
    EXPECT_LE(row.sample_seconds, row.gen_seconds);
    EXPECT_GT(row.logits_stddev, 0);
    EXPECT_GT(row.kvcache_bytes, previous_bytes);  // compressed rows accumulate with the context
    previous_bytes = row.kvcache_bytes;

    const std::vector<int32_t> prefix(prompt.begin(), prompt.begin() + row.ctx_tokens);
    // The probe decoded what a fresh session decodes from this prefix: the restore after the
    // previous frontier's probe left exactly the prefix's state.
    EXPECT_EQ(bench.last_probe(), greedy(prefix, 6));
    if (bench.done()) break;  // the last probe is not undone
    // And the probe of this frontier is undone: the session is back at the prefix, bit for bit.
    Session& s = bench.session(0);
    EXPECT_EQ(s.tokens(), prefix);
    std::unique_ptr<Session> fresh = engine_->new_session();
    fresh->set_tokens(prefix);
    Session* one[] = {fresh.get()};
    engine_->step(one);
    ASSERT_EQ(s.logits().size(), fresh->logits().size());
    EXPECT_TRUE(std::equal(s.logits().begin(), s.logits().end(), fresh->logits().begin()));
    EXPECT_EQ(s.state_bytes(), fresh->state_bytes());
  }
  EXPECT_THROW(bench.next(), std::logic_error);
}

TEST_F(BenchTest, ABatchRunsIdenticalSessionsTogether) {
  BenchOptions o = sweep(10, 30, 20);
  o.gen_tokens = 3;
  const std::vector<int32_t> prompt = random_tokens(30, 22);
  Bench single(*engine_, o, prompt);
  o.batch = 3;
  Bench batch(*engine_, o, prompt);
  while (!batch.done()) {
    const BenchRow one = single.next();
    const BenchRow three = batch.next();
    EXPECT_EQ(three.batch, 3);
    EXPECT_EQ(three.ctx_tokens, one.ctx_tokens);
    EXPECT_EQ(three.prefill_tokens, one.prefill_tokens);
    EXPECT_EQ(three.kvcache_bytes, 3 * one.kvcache_bytes);
    EXPECT_EQ(batch.last_probe(), single.last_probe());
    for (int i = 1; i < 3; ++i) {
      EXPECT_EQ(batch.session(i).tokens(), batch.session(0).tokens());
      EXPECT_TRUE(std::equal(batch.session(i).logits().begin(), batch.session(i).logits().end(),
                             batch.session(0).logits().begin()));
    }
  }
}

TEST_F(BenchTest, RefusesAShortPromptOrContext) {
  BenchOptions o = sweep(8, 32, 8);
  o.gen_tokens = 4;
  EXPECT_THROW(Bench(*engine_, o, random_tokens(31, 1)), std::invalid_argument);
  o.gen_tokens = 33;  // 32 + 33 > the engine's 64
  EXPECT_THROW(Bench(*engine_, o, random_tokens(32, 1)), std::invalid_argument);
  o.gen_tokens = 32;
  EXPECT_NO_THROW(Bench(*engine_, o, random_tokens(32, 1)));
}

}  // namespace
}  // namespace magnetar::engine
