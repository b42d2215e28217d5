#include "engine/sampler.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <functional>
#include <limits>
#include <stdexcept>

namespace magnetar::engine {
namespace {

// xorshift* has a fixed point at 0; §7.2 replaces that state with the golden-ratio constant.
constexpr uint64_t kZeroStateReplacement = 0x9e3779b97f4a7c15ULL;

// The first partial sort of the top-p walk covers this many candidates; each later one four times
// as many. Top-p usually ends within a few dozen tokens, so the vocabulary is rarely fully sorted.
constexpr size_t kFirstSortedChunk = 64;

void validate(const SamplingParams& p) {
  if (!(std::isfinite(p.temperature) && p.temperature >= 0.0f)) {
    throw std::invalid_argument(fmt::format(
        "temperature must be a finite number >= 0 (0 = greedy), got {}", p.temperature));
  }
  if (p.top_k < 0) {
    throw std::invalid_argument(fmt::format("top_k must be >= 0 (0 = off), got {}", p.top_k));
  }
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) {
    throw std::invalid_argument(fmt::format("top_p must be in (0, 1], got {}", p.top_p));
  }
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) {
    throw std::invalid_argument(fmt::format("min_p must be in [0, 1], got {}", p.min_p));
  }
  if (p.top_logprobs < 0 || p.top_logprobs > Sampler::kMaxTopLogprobs) {
    throw std::invalid_argument(fmt::format("top_logprobs must be in [0, {}], got {}",
                                            Sampler::kMaxTopLogprobs, p.top_logprobs));
  }
}

// The spec's unseeded start state: time, a per-process counter and an address, so concurrent
// sequences started in the same second still differ.
uint64_t unseeded_state(const void* address) {
  static std::atomic<uint64_t> counter{0};
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  const auto seconds =
      static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(now).count());
  return (seconds << 32) ^ (counter.fetch_add(1) << 1) ^ reinterpret_cast<uintptr_t>(address);
}

}  // namespace

Sampler::Sampler(const SamplingParams& params) : params_(params) {
  validate(params_);
  seed_ = params_.seed.has_value() ? *params_.seed : unseeded_state(this);
  state_ = seed_ == 0 ? kZeroStateReplacement : seed_;
}

float Sampler::next_uniform() {
  uint64_t x = state_;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  state_ = x;
  const uint64_t out = x * 0x2545f4914f6cdd1dULL;
  // 24 bits make every value exactly representable in a float, so u is identical everywhere.
  return static_cast<float>((out >> 40) & 0xFFFFFF) / 16777216.0f;
}

SampleResult Sampler::sample(std::span<const float> logits) {
  if (logits.empty()) throw std::invalid_argument("sample: empty logits");
  if (params_.temperature == 0.0f) return sample_greedy(logits);

  float max_logit = 0.0f;
  int32_t argmax = -1;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (std::isfinite(logits[i]) && (argmax < 0 || logits[i] > max_logit)) {
      max_logit = logits[i];
      argmax = static_cast<int32_t>(i);
    }
  }
  if (argmax < 0) return sample_greedy(logits);

  const bool sorted_walk = params_.top_k > 0 || params_.top_p < 1.0f;
  const int32_t token = sorted_walk ? sample_sorted(logits, max_logit)
                                    : sample_in_id_order(logits, max_logit, argmax);
  return describe(logits, token);
}

SampleResult Sampler::sample_greedy(std::span<const float> logits) const {
  if (logits.empty()) throw std::invalid_argument("sample_greedy: empty logits");
  int32_t best = 0;
  float best_logit = -std::numeric_limits<float>::infinity();
  for (size_t i = 0; i < logits.size(); ++i) {
    if (logits[i] > best_logit) {
      best_logit = logits[i];
      best = static_cast<int32_t>(i);
    }
  }
  return describe(logits, best);
}

// Without top-k or top-p no order is needed: one pass computes the weights (zero for tokens that
// min-p drops or whose weight underflows) and a second walks them by id.
int32_t Sampler::sample_in_id_order(std::span<const float> logits, float max_logit,
                                    int32_t argmax) {
  weights_.resize(logits.size());
  double sum = 0.0;
  for (size_t i = 0; i < logits.size(); ++i) {
    float w = 0.0f;
    if (std::isfinite(logits[i])) {
      w = std::exp((logits[i] - max_logit) / params_.temperature);
      if (w < params_.min_p) w = 0.0f;
    }
    weights_[i] = w;
    sum += w;
  }
  // The top token has weight exactly 1, so sum >= 1: there is always something to draw.
  double r = static_cast<double>(next_uniform()) * sum;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (weights_[i] == 0.0f) continue;
    r -= weights_[i];
    if (r <= 0.0) return static_cast<int32_t>(i);
  }
  // Reached only if rounding left r a hair above zero after the last weight.
  return argmax;
}

int32_t Sampler::sample_sorted(std::span<const float> logits, float max_logit) {
  const auto before = [](const Candidate& a, const Candidate& b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  };
  candidates_.clear();
  for (size_t i = 0; i < logits.size(); ++i) {
    if (std::isfinite(logits[i])) candidates_.push_back({logits[i], static_cast<int32_t>(i)});
  }
  size_t sorted = 0;
  if (params_.top_k > 0) {
    const size_t k = std::min(
        {static_cast<size_t>(params_.top_k), static_cast<size_t>(kMaxTopK), candidates_.size()});
    std::partial_sort(candidates_.begin(), candidates_.begin() + k, candidates_.end(), before);
    candidates_.resize(k);
    sorted = k;
  }

  // Weights and their total over every candidate top-k left: top-p's probabilities use this
  // total even for candidates that min-p removes below.
  weights_.resize(logits.size());
  double total = 0.0;
  for (const Candidate& c : candidates_) {
    const float w = std::exp((c.logit - max_logit) / params_.temperature);
    weights_[c.id] = w;
    total += w;
  }
  // Weights never increase along the descending order, so min-p's "stop at the first candidate
  // below min_p" keeps exactly the candidates at or above it; zero weights can never be drawn.
  // Dropping the rest now, in any order, also keeps the sort below short.
  const float min_p = params_.min_p;
  const auto dropped = [&](const Candidate& c) {
    return !(weights_[c.id] > 0.0f && weights_[c.id] >= min_p);
  };
  // remove_if keeps the survivors' order, so a top-k prefix stays sorted.
  candidates_.erase(std::remove_if(candidates_.begin(), candidates_.end(), dropped),
                    candidates_.end());
  if (sorted > 0) sorted = candidates_.size();

  // Top-p: keep candidates while the cumulative probability is below top_p (the first always),
  // sorting further only when the walk reaches the end of the sorted prefix.
  const bool top_p_active = params_.top_p < 1.0f;
  const double top_p = params_.top_p;
  double cumulative = 0.0;
  double kept_weight = 0.0;
  size_t kept = 0;
  while (kept < candidates_.size()) {
    if (kept > 0 && top_p_active && cumulative >= top_p) break;
    if (kept == sorted) {
      const size_t next = std::min(candidates_.size(), std::max(kFirstSortedChunk, sorted * 4));
      std::partial_sort(candidates_.begin() + sorted, candidates_.begin() + next, candidates_.end(),
                        before);
      sorted = next;
    }
    const float w = weights_[candidates_[kept].id];
    cumulative += w / total;
    kept_weight += w;
    ++kept;
  }

  double r = static_cast<double>(next_uniform()) * kept_weight;
  for (size_t i = 0; i < kept; ++i) {
    r -= weights_[candidates_[i].id];
    if (r <= 0.0) return candidates_[i].id;
  }
  // Reached only if rounding left r a hair above zero; the first candidate is the argmax.
  return candidates_.front().id;
}

SampleResult Sampler::describe(std::span<const float> logits, int32_t token) const {
  SampleResult result;
  result.token = token;
  const size_t n = static_cast<size_t>(params_.top_logprobs);
  if (!params_.logprobs && n == 0) {
    result.logprob = std::numeric_limits<float>::quiet_NaN();
    return result;
  }
  // log-softmax at temperature 1 over the finite logits, accumulated in double: the normaliser
  // sums up to 129,280 terms.
  double max_logit = -std::numeric_limits<double>::infinity();
  for (const float l : logits) {
    if (std::isfinite(l)) max_logit = std::max(max_logit, static_cast<double>(l));
  }
  double sum = 0.0;
  for (const float l : logits) {
    if (std::isfinite(l)) sum += std::exp(static_cast<double>(l) - max_logit);
  }
  const double log_normaliser = max_logit + std::log(sum);
  const auto logprob = [&](float l) {
    return std::isfinite(l) ? static_cast<float>(l - log_normaliser)
                            : -std::numeric_limits<float>::infinity();
  };

  result.logprob = logprob(logits[token]);

  // Top-N by insertion into a short sorted list: most logits fail the comparison with the
  // current N-th and cost one compare, so this is one pass over the vocabulary.
  if (n == 0) return result;
  std::vector<TokenLogprob>& top = result.top_logprobs;
  top.reserve(n + 1);
  std::vector<float> top_logits;
  top_logits.reserve(n + 1);
  for (size_t i = 0; i < logits.size(); ++i) {
    const float l = logits[i];
    if (!std::isfinite(l)) continue;
    if (top.size() == n && !(l > top_logits.back())) continue;
    // Strictly greater moves ahead, so equal logits stay in id order.
    const size_t pos =
        std::upper_bound(top_logits.begin(), top_logits.end(), l, std::greater<float>()) -
        top_logits.begin();
    top_logits.insert(top_logits.begin() + pos, l);
    top.insert(top.begin() + pos, {static_cast<int32_t>(i), 0.0f});
    if (top.size() > n) {
      top_logits.pop_back();
      top.pop_back();
    }
  }
  for (size_t i = 0; i < top.size(); ++i) top[i].logprob = logprob(top_logits[i]);
  return result;
}

}  // namespace magnetar::engine
