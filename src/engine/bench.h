// Throughput at context frontiers: the measurement of ds4's `ds4-bench`, on Magnetar's engine.
//
// A fixed token sequence (the prompt) is walked to increasing frontiers, e.g. 2048, 4096, 6144, …
// up to ctx_max. Each frontier is reached by *incremental* prefill: only the tokens past the
// previous frontier are processed, and that prefill is timed. At the frontier the state is
// snapshotted, a greedy decode probe of gen_tokens tokens runs (argmax on the host, EOS excluded so
// every row decodes the same number of tokens) and is timed, and the snapshot is restored, so the
// probe leaves no trace on the next frontier. One row per frontier:
//
//   ctx_tokens,prefill_tokens,prefill_tps,gen_tokens,gen_tps,kvcache_bytes
//
// as ds4-bench prints it (kvcache_bytes: here the bytes of model state the sessions hold at the
// frontier, backend::Sequence::state_bytes; ds4 reports its snapshot's size).
//
// With batch > 1, that many sessions walk the same frontiers together: every prefill and decode
// step is one Engine::step over all of them, prefill_tps and gen_tps are aggregate rates (batch ×
// tokens per session / seconds), prefill_tokens and gen_tokens stay per session, and rows get a
// trailing `batch` column.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/engine.h"
#include "tokenizer/tokenizer.h"

namespace magnetar::engine {

struct BenchOptions {
  int64_t ctx_start = 2048;  // the first frontier
  int64_t ctx_max = 32768;   // the last frontier
  int64_t step_incr = 2048;  // linear steps, when step_mul is 1
  double step_mul = 1.0;     // > 1: each frontier is ceil(previous × step_mul)
  int64_t gen_tokens = 128;  // decode probe per frontier and session
  int batch = 1;             // sessions walking the frontiers together
};

// Throws std::invalid_argument naming the flag (--ctx-start, ...) when the options make no sweep.
void validate_bench_options(const BenchOptions& options);

// The frontiers, in order; the last is always ctx_max.
std::vector<int64_t> bench_frontiers(const BenchOptions& options);

// The benchmark sequence from a text: its tokens as ds4-bench takes a prompt file (plain text, no
// special tokens, no BOS), repeated end to end until there are `count`. Throws
// std::invalid_argument when the text has no tokens.
std::vector<int32_t> bench_prompt(const tokenizer::Tokenizer& tokenizer, std::string_view text,
                                  int64_t count);
// `count` ordinary tokens from a seeded generator, for a run without a prompt file.
std::vector<int32_t> bench_random_prompt(const tokenizer::Tokenizer& tokenizer, int64_t count,
                                         uint64_t seed);

struct BenchRow {
  int64_t ctx_tokens = 0;      // the frontier
  int64_t prefill_tokens = 0;  // tokens prefilled to reach it (per session)
  double prefill_seconds = 0;
  int64_t gen_tokens = 0;      // tokens decoded by the probe (per session)
  double gen_seconds = 0;      // the whole probe, host sampling included
  double sample_seconds = 0;   // of which: the host argmax
  uint64_t kvcache_bytes = 0;  // state bytes of all the sessions at the frontier
  int batch = 1;
  // Standard deviation of session 0's logits at the frontier: a model whose activations vanished
  // or exploded (random weights with bad scales) shows here, and non-finite or all-equal logits
  // stop the bench with an error.
  double logits_stddev = 0;

  double prefill_tps() const;  // batch × prefill_tokens / prefill_seconds (0 when no time)
  double gen_tps() const;      // batch × gen_tokens / gen_seconds
};

// ds4-bench's header line, plus ",batch" when `with_batch`; no newline.
std::string bench_csv_header(bool with_batch);
// One row in that form: rates with two decimals, as ds4-bench prints them; no newline.
std::string bench_csv_row(const BenchRow& row, bool with_batch);

class Bench {
 public:
  // Creates the sessions on `engine`, which must outlive the bench. Throws std::invalid_argument
  // for invalid options, a prompt shorter than ctx_max, or an engine context smaller than
  // ctx_max + gen_tokens (the probe at the last frontier must fit).
  Bench(Engine& engine, const BenchOptions& options, std::vector<int32_t> prompt);

  const std::vector<int64_t>& frontiers() const { return frontiers_; }

  // Prefills every session to the next frontier, probes and restores. At the last frontier the
  // probe is not undone: nothing follows, and not holding a snapshot there spares a second copy of
  // the largest states. Throws std::logic_error after the last frontier and std::runtime_error
  // for degenerate logits (see BenchRow::logits_stddev). `progress` sees the prefill's tokens done
  // and total (all sessions).
  BenchRow next(const ProgressFn& progress = nullptr);
  bool done() const { return next_ >= frontiers_.size(); }

  // The sessions, at the last frontier reached (with the probe undone, unless it was the last
  // one), and the tokens session 0 decoded in the last probe: what the tests compare against runs
  // without probes.
  Session& session(int i) { return *sessions_.at(static_cast<size_t>(i)); }
  const std::vector<int32_t>& last_probe() const { return last_probe_; }

 private:
  Engine& engine_;
  BenchOptions options_;
  std::vector<int32_t> prompt_;
  std::vector<int64_t> frontiers_;
  size_t next_ = 0;
  std::vector<std::unique_ptr<Session>> sessions_;
  std::vector<Session*> batch_;
  std::vector<int32_t> last_probe_;
};

// The standard deviation of a frontier's logits. Throws std::runtime_error naming the frontier
// when they cannot come from a working model: empty, not finite, or all equal.
double checked_logits_stddev(std::span<const float> logits, int64_t frontier);

// The greedy token: the highest logit other than `excluded` (ties: the lowest id).
int32_t argmax_excluding(std::span<const float> logits, int32_t excluded);

}  // namespace magnetar::engine
