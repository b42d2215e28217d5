#include "engine/bench.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <random>
#include <stdexcept>

namespace magnetar::engine {
namespace {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double rate(int64_t tokens, int batch, double seconds) {
  return seconds > 0 ? static_cast<double>(tokens) * batch / seconds : 0.0;
}

}  // namespace

void validate_bench_options(const BenchOptions& o) {
  auto require = [](bool ok, const std::string& what) {
    if (!ok) throw std::invalid_argument(what);
  };
  require(o.ctx_start > 0, "--ctx-start must be positive");
  require(o.ctx_max > 0, "--ctx-max must be positive");
  require(o.ctx_start <= o.ctx_max, "--ctx-start must be <= --ctx-max");
  require(std::isfinite(o.step_mul) && o.step_mul >= 1.0, "--step-mul must be >= 1");
  require(o.step_mul != 1.0 || o.step_incr > 0, "--step-incr must be positive");
  require(o.gen_tokens > 0, "--gen-tokens must be positive");
  require(o.batch > 0, "--batch must be positive");
  require(o.ctx_max <= std::numeric_limits<int32_t>::max() - o.gen_tokens,
          "--ctx-max + --gen-tokens is too large");
}

std::vector<int64_t> bench_frontiers(const BenchOptions& o) {
  validate_bench_options(o);
  std::vector<int64_t> out{o.ctx_start};
  for (int64_t cur = o.ctx_start; cur < o.ctx_max;) {
    int64_t next;
    if (o.step_mul == 1.0) {
      next = cur + o.step_incr;
    } else {
      const double grown = std::ceil(static_cast<double>(cur) * o.step_mul);
      next = grown >= static_cast<double>(o.ctx_max) ? o.ctx_max : static_cast<int64_t>(grown);
      next = std::max(next, cur + 1);  // a factor close to 1 still advances
    }
    cur = std::min(next, o.ctx_max);
    out.push_back(cur);
  }
  return out;
}

std::vector<int32_t> bench_prompt(const tokenizer::Tokenizer& tokenizer, std::string_view text,
                                  int64_t count) {
  const std::vector<int32_t> once = tokenizer.encode(text, /*allow_special=*/false);
  if (once.empty()) throw std::invalid_argument("the prompt text has no tokens");
  std::vector<int32_t> out;
  out.reserve(static_cast<size_t>(count));
  while (static_cast<int64_t>(out.size()) < count) {
    const size_t take = std::min(once.size(), static_cast<size_t>(count) - out.size());
    out.insert(out.end(), once.begin(), once.begin() + static_cast<std::ptrdiff_t>(take));
  }
  return out;
}

std::vector<int32_t> bench_random_prompt(const tokenizer::Tokenizer& tokenizer, int64_t count,
                                         uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(tokenizer.vocab_size() - 1));
  std::vector<int32_t> out;
  out.reserve(static_cast<size_t>(count));
  while (static_cast<int64_t>(out.size()) < count) {
    const int32_t t = id(rng);
    if (!tokenizer.is_added(t) && !tokenizer.token_bytes(t).empty()) out.push_back(t);
  }
  return out;
}

double BenchRow::prefill_tps() const { return rate(prefill_tokens, batch, prefill_seconds); }
double BenchRow::gen_tps() const { return rate(gen_tokens, batch, gen_seconds); }

std::string bench_csv_header(bool with_batch) {
  return std::string("ctx_tokens,prefill_tokens,prefill_tps,gen_tokens,gen_tps,kvcache_bytes") +
         (with_batch ? ",batch" : "");
}

std::string bench_csv_row(const BenchRow& r, bool with_batch) {
  std::string line = fmt::format("{},{},{:.2f},{},{:.2f},{}", r.ctx_tokens, r.prefill_tokens,
                                 r.prefill_tps(), r.gen_tokens, r.gen_tps(), r.kvcache_bytes);
  if (with_batch) line += fmt::format(",{}", r.batch);
  return line;
}

double checked_logits_stddev(std::span<const float> logits, int64_t frontier) {
  const std::string where = "at context " + std::to_string(frontier) + ": ";
  if (logits.empty()) throw std::runtime_error(where + "no logits");
  double sum = 0, sum_sq = 0;
  for (float v : logits) {
    if (!std::isfinite(v)) throw std::runtime_error(where + "the logits are not finite");
    sum += v;
    sum_sq += static_cast<double>(v) * v;
  }
  const auto [low, high] = std::minmax_element(logits.begin(), logits.end());
  if (*low == *high) throw std::runtime_error(where + "every logit is equal");
  const double mean = sum / static_cast<double>(logits.size());
  return std::sqrt(std::max(0.0, sum_sq / static_cast<double>(logits.size()) - mean * mean));
}

int32_t argmax_excluding(std::span<const float> logits, int32_t excluded) {
  int32_t best = -1;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (static_cast<int32_t>(i) == excluded) continue;
    if (best < 0 || logits[i] > logits[static_cast<size_t>(best)]) best = static_cast<int32_t>(i);
  }
  if (best < 0) throw std::logic_error("argmax_excluding: no token to choose");
  return best;
}

Bench::Bench(Engine& engine, const BenchOptions& options, std::vector<int32_t> prompt)
    : engine_(engine),
      options_(options),
      prompt_(std::move(prompt)),
      frontiers_(bench_frontiers(options)) {
  if (static_cast<int64_t>(prompt_.size()) < options.ctx_max) {
    throw std::invalid_argument("the prompt has " + std::to_string(prompt_.size()) +
                                " tokens, --ctx-max needs " + std::to_string(options.ctx_max));
  }
  if (engine.context() < options.ctx_max + options.gen_tokens) {
    throw std::invalid_argument("the context (" + std::to_string(engine.context()) +
                                " tokens) is smaller than --ctx-max + --gen-tokens (" +
                                std::to_string(options.ctx_max + options.gen_tokens) + ")");
  }
  for (int i = 0; i < options.batch; ++i) {
    sessions_.push_back(engine.new_session());
    batch_.push_back(sessions_.back().get());
  }
}

BenchRow Bench::next(const ProgressFn& progress) {
  if (done()) throw std::logic_error("the bench has passed its last frontier");
  const int64_t frontier = frontiers_[next_];
  const int64_t previous = next_ == 0 ? 0 : frontiers_[next_ - 1];
  const bool last = ++next_ == frontiers_.size();
  BenchRow row;
  row.ctx_tokens = frontier;
  row.prefill_tokens = frontier - previous;
  row.gen_tokens = options_.gen_tokens;
  row.batch = options_.batch;

  const std::span<const int32_t> prefix(prompt_.data(), static_cast<size_t>(frontier));
  const double prefill_start = now_seconds();
  for (Session* s : batch_) s->set_tokens(prefix);
  engine_.step(batch_, progress);
  row.prefill_seconds = now_seconds() - prefill_start;
  row.logits_stddev = checked_logits_stddev(batch_[0]->logits(), frontier);

  std::vector<SessionState> snapshots;
  for (Session* s : batch_) {
    row.kvcache_bytes += s->state_bytes();
    if (!last) snapshots.push_back(s->snapshot());
  }

  const int32_t eos = engine_.tokenizer().eos_id();
  last_probe_.clear();
  const double gen_start = now_seconds();
  for (int64_t i = 0; i < options_.gen_tokens; ++i) {
    const double sample_start = now_seconds();
    for (Session* s : batch_) s->append(argmax_excluding(s->logits(), eos));
    last_probe_.push_back(batch_[0]->tokens().back());
    row.sample_seconds += now_seconds() - sample_start;
    engine_.step(batch_);
  }
  row.gen_seconds = now_seconds() - gen_start;

  for (size_t i = 0; i < snapshots.size(); ++i) batch_[i]->restore(std::move(snapshots[i]));
  return row;
}

}  // namespace magnetar::engine
