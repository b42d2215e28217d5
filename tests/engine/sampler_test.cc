#include "engine/sampler.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <numeric>
#include <set>
#include <stdexcept>
#include <vector>

namespace magnetar::engine {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// u as server-api.md §7.2 defines it, restated here so the test checks the sampler's RNG against
// the spec rather than against itself.
class SpecUniforms {
 public:
  explicit SpecUniforms(uint64_t seed) : state_(seed == 0 ? 0x9e3779b97f4a7c15ULL : seed) {}
  float next() {
    uint64_t x = state_;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    state_ = x;
    const uint64_t out = x * 0x2545f4914f6cdd1dULL;
    return static_cast<float>((out >> 40) & 0xFFFFFF) / 16777216.0f;
  }

 private:
  uint64_t state_;
};

// Deterministic test logits, independent of the sampler's RNG.
std::vector<float> pseudo_random_logits(size_t n, uint64_t seed, float scale) {
  std::vector<float> logits(n);
  uint64_t s = seed;
  for (float& l : logits) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    l = scale * (static_cast<float>(s >> 40) / 16777216.0f - 0.5f);
  }
  return logits;
}

SamplingParams seeded(uint64_t seed) {
  SamplingParams p;
  p.seed = seed;
  return p;
}

// The distribution the sampler must draw from, computed in double from the definitions in
// server-api.md §7.2: token id -> probability.
std::map<int32_t, double> expected_distribution(const std::vector<float>& logits,
                                                const SamplingParams& p) {
  std::vector<int32_t> ids;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (std::isfinite(logits[i])) ids.push_back(static_cast<int32_t>(i));
  }
  std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  if (p.top_k > 0) ids.resize(std::min<size_t>({ids.size(), size_t(p.top_k), 1024}));
  const double m = logits[ids[0]];
  std::vector<double> w;
  for (int32_t id : ids) w.push_back(std::exp((logits[id] - m) / p.temperature));
  const double total = std::accumulate(w.begin(), w.end(), 0.0);
  size_t kept = 1;
  double cumulative = w[0] / total;
  while (kept < ids.size() && w[kept] >= p.min_p && (p.top_p >= 1 || cumulative < p.top_p)) {
    cumulative += w[kept] / total;
    ++kept;
  }
  const double kept_total = std::accumulate(w.begin(), w.begin() + kept, 0.0);
  std::map<int32_t, double> dist;
  for (size_t i = 0; i < kept; ++i) dist[ids[i]] = w[i] / kept_total;
  return dist;
}

// Samples `draws` times and checks that only expected tokens appear, each within five binomial
// standard deviations of its expected count (the seed is fixed, so this is deterministic).
void expect_draws_follow(const std::vector<float>& logits, const SamplingParams& params,
                         int draws) {
  const std::map<int32_t, double> expected = expected_distribution(logits, params);
  Sampler sampler(params);
  std::map<int32_t, int> counts;
  for (int i = 0; i < draws; ++i) ++counts[sampler.sample(logits).token];
  for (const auto& [token, count] : counts) {
    EXPECT_TRUE(expected.contains(token)) << "token " << token << " drawn " << count << " times";
  }
  for (const auto& [token, p] : expected) {
    const double mean = draws * p;
    const double sigma = std::sqrt(draws * p * (1 - p));
    EXPECT_NEAR(counts[token], mean, 5 * sigma + 1) << "token " << token << " p=" << p;
  }
}

// Fourteen tokens whose logit order differs from their id order, two of them non-finite (never
// drawn). The filter boundaries in the tests below are far from ties.
const std::vector<float> kLogits = {-0.3f, 2.0f, -1.7f, 0.9f,  kNaN, 1.5f,  -4.0f,
                                    0.0f,  1.2f, -kInf, -2.5f, 0.4f, -1.0f, 1.9f};

TEST(Sampler, DrawsWithTheSpecRandomNumbers) {
  // Two equal logits: r = 2u, and the first token is chosen exactly when u <= 0.5.
  const std::vector<float> logits = {0.0f, 0.0f};
  for (uint64_t seed : {uint64_t{12345}, uint64_t{0}}) {
    Sampler sampler(seeded(seed));
    SpecUniforms u(seed);
    for (int i = 0; i < 1000; ++i) {
      ASSERT_EQ(sampler.sample(logits).token, u.next() <= 0.5f ? 0 : 1) << "step " << i;
    }
  }
}

TEST(Sampler, SameSeedSameTokensDifferentSeedDifferentTokens) {
  SamplingParams filtered = seeded(7);
  filtered.temperature = 0.8f;
  filtered.top_k = 40;
  filtered.top_p = 0.9f;
  filtered.min_p = 0.05f;
  for (SamplingParams params : {seeded(7), filtered}) {
    Sampler a(params), b(params);
    params.seed = 8;
    Sampler c(params);
    int differences = 0;
    for (int step = 0; step < 200; ++step) {
      const std::vector<float> logits = pseudo_random_logits(1000, step, 8.0f);
      const int32_t token = a.sample(logits).token;
      EXPECT_EQ(token, b.sample(logits).token) << "step " << step;
      differences += token != c.sample(logits).token;
    }
    EXPECT_GT(differences, 20);
  }
}

TEST(Sampler, UnseededSamplersReportDistinctSeeds) {
  Sampler a(SamplingParams{}), b(SamplingParams{});
  EXPECT_NE(a.seed(), b.seed());
  EXPECT_EQ(Sampler(seeded(99)).seed(), 99u);
}

TEST(Sampler, GreedyTakesTheFirstMaximum) {
  SamplingParams params;
  params.temperature = 0.0f;
  Sampler sampler(params);
  EXPECT_EQ(sampler.sample(std::vector<float>{1.0f, 5.0f, 3.0f, 5.0f}).token, 1);
  EXPECT_EQ(sampler.sample(std::vector<float>{kNaN, 2.0f, 2.0f}).token, 1);
  EXPECT_EQ(sampler.sample(std::vector<float>{-kInf, -kInf}).token, 0);
}

TEST(Sampler, ForcedGreedyStepsLeaveTheRandomSequenceAlone) {
  Sampler plain(seeded(3)), interleaved(seeded(3));
  for (int step = 0; step < 100; ++step) {
    const std::vector<float> logits = pseudo_random_logits(500, step, 4.0f);
    EXPECT_EQ(interleaved.sample_greedy(logits).token,
              std::max_element(logits.begin(), logits.end()) - logits.begin());
    EXPECT_EQ(plain.sample(logits).token, interleaved.sample(logits).token);
  }
}

TEST(Sampler, NoFilterDrawsFromTheFullSoftmax) { expect_draws_follow(kLogits, seeded(1), 20000); }

TEST(Sampler, TopKKeepsTheKLargest) {
  SamplingParams params = seeded(2);
  params.top_k = 4;
  EXPECT_EQ(expected_distribution(kLogits, params).size(), 4u);
  expect_draws_follow(kLogits, params, 20000);
}

TEST(Sampler, TopPKeepsTheSmallestPrefixReachingP) {
  SamplingParams params = seeded(3);
  params.top_p = 0.6f;
  EXPECT_EQ(expected_distribution(kLogits, params).size(), 3u);
  expect_draws_follow(kLogits, params, 20000);
}

TEST(Sampler, MinPKeepsTokensNearTheTop) {
  SamplingParams params = seeded(4);
  params.min_p = 0.25f;
  EXPECT_EQ(expected_distribution(kLogits, params).size(), 5u);
  expect_draws_follow(kLogits, params, 20000);
}

TEST(Sampler, AllFiltersTogether) {
  SamplingParams params = seeded(5);
  params.temperature = 0.7f;
  params.top_k = 8;
  params.top_p = 0.85f;
  params.min_p = 0.03f;
  expect_draws_follow(kLogits, params, 20000);
}

TEST(Sampler, TemperatureReshapesTheDistribution) {
  const std::vector<float> logits = {0.0f, 1.0f, 2.0f, 3.0f};
  std::vector<double> top_share;
  for (float temperature : {0.5f, 1.0f, 2.0f}) {
    SamplingParams params = seeded(6);
    params.temperature = temperature;
    const std::map<int32_t, double> expected = expected_distribution(logits, params);
    Sampler sampler(params);
    const int draws = 20000;
    std::vector<int> counts(logits.size());
    for (int i = 0; i < draws; ++i) ++counts[sampler.sample(logits).token];
    double chi_square = 0.0;
    for (size_t t = 0; t < logits.size(); ++t) {
      const double mean = draws * expected.at(static_cast<int32_t>(t));
      chi_square += (counts[t] - mean) * (counts[t] - mean) / mean;
    }
    EXPECT_LT(chi_square, 16.27) << "T=" << temperature;  // 3 degrees of freedom, p = 0.001
    top_share.push_back(counts[3] / double(draws));
  }
  EXPECT_GT(top_share[0], top_share[1]);
  EXPECT_GT(top_share[1], top_share[2]);
}

TEST(Sampler, TopKIsCappedAt1024) {
  const std::vector<float> logits(3000, 0.0f);  // all tied: the lowest ids come first
  SamplingParams params = seeded(9);
  params.top_k = 5000;
  Sampler sampler(params);
  int32_t highest = 0;
  for (int i = 0; i < 20000; ++i) highest = std::max(highest, sampler.sample(logits).token);
  EXPECT_EQ(highest, 1023);
}

TEST(Sampler, FullVocabularyTopPAndTopK) {
  // A realistic shape: a few hundred plausible tokens over a long tail, so the top-p walk has to
  // extend its partial sort several times.
  std::vector<float> logits = pseudo_random_logits(129280, 11, 4.0f);
  for (float& l : logits) l -= 12.0f;
  const std::vector<float> head = pseudo_random_logits(600, 12, 3.0f);
  for (size_t i = 0; i < head.size(); ++i) logits[i * 211 + 5] = head[i];
  SamplingParams top_p = seeded(10);
  top_p.top_p = 0.95f;
  SamplingParams top_k = seeded(11);
  top_k.top_k = 50;
  top_k.min_p = 0.1f;
  for (const SamplingParams& params : {top_p, top_k}) {
    const std::map<int32_t, double> expected = expected_distribution(logits, params);
    Sampler sampler(params);
    for (int i = 0; i < 500; ++i) {
      const int32_t token = sampler.sample(logits).token;
      ASSERT_TRUE(expected.contains(token)) << token;
    }
  }
  EXPECT_GT(expected_distribution(logits, top_p).size(), 300u);
}

TEST(Sampler, LogprobsAreTheRawLogSoftmax) {
  std::vector<float> logits = pseudo_random_logits(5000, 13, 20.0f);
  logits[17] = -kInf;
  logits[40] = kNaN;
  logits[100] = logits[200] = logits[300] = 10.5f;  // ties at the top: ids stay in order
  double m = -std::numeric_limits<double>::infinity();
  for (float l : logits) {
    if (std::isfinite(l)) m = std::max(m, double(l));
  }
  double sum = 0.0;
  for (float l : logits) {
    if (std::isfinite(l)) sum += std::exp(double(l) - m);
  }
  const double log_z = m + std::log(sum);

  std::vector<int32_t> order;
  for (int32_t i = 0; i < int32_t(logits.size()); ++i) {
    if (std::isfinite(logits[i])) order.push_back(i);
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });

  SamplingParams params = seeded(14);
  params.temperature = 0.6f;
  params.top_logprobs = 20;
  Sampler sampler(params);
  for (int step = 0; step < 20; ++step) {
    const SampleResult r = sampler.sample(logits);
    EXPECT_NEAR(r.logprob, logits[r.token] - log_z, 1e-5);
    ASSERT_EQ(r.top_logprobs.size(), 20u);
    for (size_t i = 0; i < 20; ++i) {
      EXPECT_EQ(r.top_logprobs[i].token, order[i]) << i;
      EXPECT_NEAR(r.top_logprobs[i].logprob, logits[order[i]] - log_z, 1e-5);
    }
  }
  EXPECT_EQ(sampler.sample_greedy(logits).token, 100);
  EXPECT_EQ(sampler.sample_greedy(logits).top_logprobs[1].token, 200);
}

// Logprobs are computed only when asked: the same tokens either way, NaN when not asked, the
// log-softmax when `logprobs` alone is set.
TEST(Sampler, LogprobsOnlyWhenAsked) {
  const std::vector<float> logits = {0.5f, 2.0f, -1.0f, 2.0f, 0.25f};
  double sum = 0;
  for (float l : logits) sum += std::exp(double(l) - 2.0);
  const double log_z = 2.0 + std::log(sum);
  SamplingParams quiet = seeded(21);
  quiet.temperature = 0.8f;
  SamplingParams asked = quiet;
  asked.logprobs = true;
  Sampler a(quiet), b(asked);
  for (int step = 0; step < 50; ++step) {
    const SampleResult x = a.sample(logits), y = b.sample(logits);
    EXPECT_EQ(x.token, y.token);
    EXPECT_TRUE(std::isnan(x.logprob));
    EXPECT_TRUE(x.top_logprobs.empty());
    EXPECT_NEAR(y.logprob, logits[y.token] - log_z, 1e-6);
  }
  EXPECT_TRUE(std::isnan(a.sample_greedy(logits).logprob));
  EXPECT_NEAR(b.sample_greedy(logits).logprob, 2.0 - log_z, 1e-6);
}

TEST(Sampler, FewerAlternativesThanRequestedWhenFewLogitsAreFinite) {
  SamplingParams params = seeded(15);
  params.top_logprobs = 5;
  Sampler sampler(params);
  const SampleResult r = sampler.sample(std::vector<float>{-kInf, 1.0f, kNaN, 1.0f});
  ASSERT_EQ(r.top_logprobs.size(), 2u);
  EXPECT_EQ(r.top_logprobs[0].token, 1);
  EXPECT_EQ(r.top_logprobs[1].token, 3);
  EXPECT_NEAR(r.top_logprobs[0].logprob, std::log(0.5), 1e-6);
}

TEST(Sampler, RejectsOutOfRangeParameters) {
  using ::testing::HasSubstr;
  const auto error_for = [](SamplingParams p) -> std::string {
    try {
      Sampler sampler(p);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "";
  };
  SamplingParams p;
  p.temperature = -0.1f;
  EXPECT_THAT(error_for(p), HasSubstr("temperature"));
  p.temperature = kNaN;
  EXPECT_THAT(error_for(p), HasSubstr("temperature"));
  p = {};
  p.top_k = -1;
  EXPECT_THAT(error_for(p), HasSubstr("top_k"));
  p = {};
  p.top_p = 0.0f;
  EXPECT_THAT(error_for(p), HasSubstr("top_p"));
  p.top_p = 1.5f;
  EXPECT_THAT(error_for(p), HasSubstr("top_p"));
  p = {};
  p.min_p = -0.01f;
  EXPECT_THAT(error_for(p), HasSubstr("min_p"));
  p.min_p = 1.01f;
  EXPECT_THAT(error_for(p), HasSubstr("min_p"));
  p = {};
  p.top_logprobs = 21;
  EXPECT_THAT(error_for(p), HasSubstr("top_logprobs"));
  p.top_logprobs = -1;
  EXPECT_THAT(error_for(p), HasSubstr("top_logprobs"));

  // The edges are valid.
  p = {};
  p.temperature = 0.0f;
  p.top_p = 1.0f;
  p.min_p = 1.0f;
  p.top_k = 100000;
  p.top_logprobs = 20;
  EXPECT_EQ(error_for(p), "");

  Sampler sampler(SamplingParams{});
  EXPECT_THROW(sampler.sample(std::span<const float>()), std::invalid_argument);
}

}  // namespace
}  // namespace magnetar::engine
