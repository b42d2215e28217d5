// Token sampling: picks the next token from one step's logits, as server-api.md §7.2 specifies.
//
// The spec fixes the sampler exactly so that a seed reproduces a generation:
//
//   * temperature 0 is greedy: the argmax, ties to the lower id.
//   * Otherwise only finite logits take part; m is the largest of them and every candidate gets
//     the weight w_i = exp((l_i - m) / T), so the top token has weight 1.
//   * top_k > 0 first keeps the min(top_k, 1024, V) largest logits (ties: lower id first).
//   * min_p keeps the tokens with w_i >= min_p, i.e. probability at least min_p times the top
//     token's probability.
//   * top_p < 1 walks the candidates by descending logit and keeps them while the cumulative
//     probability is below top_p; the candidate that reaches top_p is kept. Probabilities here
//     are relative to all candidates left by top-k (not just those min-p keeps), so the order of
//     the filters is: temperature, top-k, min-p, top-p (min-p and top-p commute: both cut the same
//     descending list and the one that cuts earlier wins).
//   * One uniform u in [0, 1) is drawn and r = u * (sum of kept weights) is walked down the kept
//     tokens, in id order when no top-k/top-p is active, else in descending-logit order.
//   * The random numbers come from 64-bit xorshift* with the spec's 24-bit float derivation of u,
//     so the same seed gives the same tokens on every platform and standard library.
//
// Logprobs are the log-softmax of the raw logits at temperature 1, before any filter: they
// describe what the model predicts, not the sampling distribution (OpenAI's and vLLM's reading).
// The spec leaves logprobs out (ds4 ignores them), so this is Magnetar's definition.
//
// Request-level policy is not the sampler's: the request defaults (min_p 0.05), thinking mode's
// fixed values and the DSML structure override (§7.1) are applied by the caller, which passes
// the resulting parameters here or calls sample_greedy for a forced-argmax step. Where ds4
// silently repairs an out-of-range top_p or min_p, this class refuses it; a front end that wants
// ds4's leniency maps the values before constructing the Sampler.
//
// A Sampler holds its random state and scratch buffers: one per sequence, not shared between
// threads.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace magnetar::engine {

struct SamplingParams {
  float temperature = 1.0f;  // 0 = greedy; must be finite and >= 0.
  int top_k = 0;             // 0 = off; values above 1024 act as 1024 (§7.2).
  float top_p = 1.0f;        // in (0, 1]; 1 = off.
  float min_p = 0.0f;        // in [0, 1]; 0 = off.
  // The xorshift* start state; nullopt draws one from the clock and the sampler's address (the
  // spec's unseeded behaviour). A request's `seed: 0` means "unseeded" and maps to nullopt.
  std::optional<uint64_t> seed;
  int top_logprobs = 0;  // alternatives reported per step, 0 to kMaxTopLogprobs.
  // Also SampleResult::logprob. It costs a log-softmax pass over the vocabulary (about a
  // millisecond at 129,280 tokens), so it is off unless asked; top_logprobs > 0 implies it.
  bool logprobs = false;
};

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0.0f;
};

struct SampleResult {
  int32_t token = 0;
  // log-softmax of the raw logits at the chosen token; -infinity for a non-finite logit; NaN
  // when neither logprobs nor top_logprobs was asked.
  float logprob = 0.0f;
  // The top_logprobs most likely tokens with finite logits, by descending logprob, ties to the
  // lower id; fewer when the vocabulary has fewer finite logits.
  std::vector<TokenLogprob> top_logprobs;
};

class Sampler {
 public:
  static constexpr int kMaxTopK = 1024;       // §7.2 caps top-k here.
  static constexpr int kMaxTopLogprobs = 20;  // OpenAI's limit for top_logprobs.

  // Throws std::invalid_argument naming the parameter when a value is out of range.
  explicit Sampler(const SamplingParams& params);

  const SamplingParams& params() const { return params_; }

  // The seed in use (the drawn one when params().seed was nullopt), so a run can be replayed.
  uint64_t seed() const { return seed_; }

  // Chooses the next token. Consumes one random number when it actually draws (never for
  // temperature 0, nor when no logit is finite). Throws std::invalid_argument on empty logits.
  SampleResult sample(std::span<const float> logits);

  // The argmax (first maximum; NaN never wins), with logprobs, whatever the parameters say, and
  // without touching the random state: for steps the caller forces to greedy.
  SampleResult sample_greedy(std::span<const float> logits) const;

 private:
  // A finite logit in the descending-logit order of §7.2.
  struct Candidate {
    float logit;
    int32_t id;
  };

  float next_uniform();
  int32_t sample_in_id_order(std::span<const float> logits, float max_logit, int32_t argmax);
  int32_t sample_sorted(std::span<const float> logits, float max_logit);
  SampleResult describe(std::span<const float> logits, int32_t token) const;

  SamplingParams params_;
  uint64_t seed_;
  uint64_t state_;
  // Scratch reused across steps: one vocabulary-sized array each, allocated once.
  std::vector<float> weights_;
  std::vector<Candidate> candidates_;
};

}  // namespace magnetar::engine
