// `magnetar bench`: prefill and decode throughput at context frontiers, in ds4-bench's CSV
// (engine/bench.h).
//
//   magnetar bench -m MODEL.gguf --prompt-file TEXT [--ctx-start N] [--ctx-max N]
//                  [--step-incr N | --step-mul F] [--gen-tokens N] [--batch N] [--csv FILE]
//   magnetar bench --synthetic flash [--synthetic-types q2|q4] ...   (random weights on the GPU)
//
// The CSV goes to stdout (or --csv FILE); the setup, one human line per frontier and a summary go
// to stderr. Bad flags exit with 2 before the model is opened.
#include <fmt/format.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>

#include "cli/cli_format.h"
#include "cli/commands.h"
#include "cli/generation_flags.h"
#include "engine/bench.h"

namespace magnetar::cli {
namespace {

struct BenchCliOptions {
  std::string model;
  std::string synthetic;
  std::string synthetic_types = "q2";
  uint64_t seed = 42;
  std::string backend = "auto";
  unsigned threads = 0;
  int64_t prefill_chunk = 0;  // the backend's choice
  uint64_t gpu_mem_mib = 0;   // 0: the CUDA backend's default
  std::string prompt_file;
  int64_t context = 0;  // 0: ctx-max + gen-tokens
  std::string csv;
  engine::BenchOptions bench;
};

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::invalid_argument(path + ": cannot read");
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The benchmark sequence: the prompt file's tokens (repeated when short), or random ordinary
// tokens when there is no file.
std::vector<int32_t> bench_tokens(const BenchCliOptions& o, const engine::Engine& engine) {
  const int64_t needed = o.bench.ctx_max;
  if (o.prompt_file.empty()) {
    fmt::print(stderr, "magnetar bench: no --prompt-file: {} random ordinary tokens\n",
               thousands(static_cast<uint64_t>(needed)));
    return engine::bench_random_prompt(engine.tokenizer(), needed, o.seed);
  }
  const std::string text = read_text(o.prompt_file);
  const int64_t once = static_cast<int64_t>(engine.tokenizer().encode(text).size());
  if (once > 0 && once < needed) {
    fmt::print(stderr, "magnetar bench: {} has {} tokens: repeated to reach {}\n", o.prompt_file,
               thousands(static_cast<uint64_t>(once)), thousands(static_cast<uint64_t>(needed)));
  }
  return engine::bench_prompt(engine.tokenizer(), text, needed);
}

void print_row(const engine::BenchRow& r) {
  fmt::print(
      stderr,
      "magnetar bench: ctx {:>8}: prefill {} tokens in {:.3f} s ({:.1f} tok/s), decode {} "
      "tokens in {:.3f} s ({:.1f} tok/s, host argmax {:.3f} s), state {}, logits sd {:.3g}\n",
      thousands(static_cast<uint64_t>(r.ctx_tokens)),
      thousands(static_cast<uint64_t>(r.prefill_tokens * r.batch)), r.prefill_seconds,
      r.prefill_tps(), thousands(static_cast<uint64_t>(r.gen_tokens * r.batch)), r.gen_seconds,
      r.gen_tps(), r.sample_seconds, human_bytes(r.kvcache_bytes), r.logits_stddev);
}

void print_summary(const std::vector<engine::BenchRow>& rows) {
  int64_t prefill_tokens = 0;
  double prefill_seconds = 0, sample_seconds = 0, gen_seconds = 0;
  for (const engine::BenchRow& r : rows) {
    prefill_tokens += r.prefill_tokens * r.batch;
    prefill_seconds += r.prefill_seconds;
    sample_seconds += r.sample_seconds;
    gen_seconds += r.gen_seconds;
  }
  const engine::BenchRow& first = rows.front();
  const engine::BenchRow& last = rows.back();
  fmt::print(stderr,
             "magnetar bench: summary: prefill of {} tokens at {:.1f} tok/s overall; decode "
             "{:.1f} tok/s at ctx {} and {:.1f} tok/s at ctx {}; host argmax {:.1f}% of decode "
             "time\n",
             thousands(static_cast<uint64_t>(prefill_tokens)),
             prefill_seconds > 0 ? prefill_tokens / prefill_seconds : 0.0, first.gen_tps(),
             thousands(static_cast<uint64_t>(first.ctx_tokens)), last.gen_tps(),
             thousands(static_cast<uint64_t>(last.ctx_tokens)),
             gen_seconds > 0 ? 100.0 * sample_seconds / gen_seconds : 0.0);
}

// The memory one sequence takes at the whole context (-c), where the backend can say: what a
// 1M-token session costs, without prefilling a million tokens. Reserving may not fit beside the
// sessions of the run; that is reported, not fatal: the measurements are already printed.
void print_full_context_state(engine::Engine& engine) {
  try {
    if (const std::optional<size_t> full = engine.full_context_state_bytes()) {
      fmt::print(stderr,
                 "magnetar bench: state of one sequence at the full context of {} tokens: {}\n",
                 thousands(static_cast<uint64_t>(engine.context())), human_bytes(*full));
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "magnetar bench: the state at the full context could not be reserved: {}\n",
               e.what());
  }
}

int run_bench(const BenchCliOptions& o) {
  engine::EngineOptions eo;
  eo.model = o.model;
  eo.synthetic = o.synthetic;
  eo.synthetic_types = o.synthetic_types;
  eo.synthetic_seed = o.seed;
  eo.backend = o.backend;
  eo.threads = o.threads;
  eo.prefill_chunk = o.prefill_chunk;
  eo.gpu_mem_mib = o.gpu_mem_mib;
  eo.context = o.context > 0 ? o.context : o.bench.ctx_max + o.bench.gen_tokens;
  engine::Engine engine(eo);
  fmt::print(stderr, "magnetar bench: {} on {}, context {}, batch {}, prefill chunk {}{}\n",
             o.synthetic.empty() ? o.model
                                 : "synthetic " + o.synthetic + " " + o.synthetic_types +
                                       " weights (seed " + std::to_string(o.seed) + ")",
             engine.backend_name(), thousands(static_cast<uint64_t>(engine.context())),
             o.bench.batch, engine.prefill_chunk(), engine.synthetic() ? ", RANDOM WEIGHTS" : "");

  engine::Bench bench(engine, o.bench, bench_tokens(o, engine));
  std::FILE* out = stdout;
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(nullptr, &std::fclose);
  if (!o.csv.empty()) {
    file.reset(std::fopen(o.csv.c_str(), "w"));
    if (!file) throw std::invalid_argument(o.csv + ": cannot write");
    out = file.get();
  }
  const bool with_batch = o.bench.batch > 1;
  fmt::print(out, "{}\n", engine::bench_csv_header(with_batch));
  std::fflush(out);

  std::vector<engine::BenchRow> rows;
  while (!bench.done()) {
    ProgressBar bar;
    rows.push_back(bench.next([&](int64_t done, int64_t total) { bar.update(done, total); }));
    bar.clear();
    fmt::print(out, "{}\n", engine::bench_csv_row(rows.back(), with_batch));
    std::fflush(out);
    print_row(rows.back());
  }
  print_summary(rows);
  print_full_context_state(engine);
  if (file && std::fclose(file.release()) != 0) throw std::runtime_error(o.csv + ": write failed");
  return kExitOk;
}

}  // namespace

Command add_bench_command(CLI::App& root) {
  auto o = std::make_shared<BenchCliOptions>();
  CLI::App* app = root.add_subcommand(
      "bench", "Prefill and decode throughput at context frontiers (ds4-bench's CSV)");
  CLI::Option* model =
      app->add_option("-m,--model", o->model, "The GGUF model")->check(CLI::ExistingFile);
  CLI::Option* synthetic =
      app->add_option("--synthetic", o->synthetic,
                      "Instead of a model: random weights made on the GPU for a preset: flash, "
                      "pro or tiny")
          ->check(CLI::IsMember({"flash", "pro", "tiny"}));
  model->excludes(synthetic);
  app->add_option("--synthetic-types", o->synthetic_types,
                  "Weight types of the synthetic model: q2 or q4 (default q2)")
      ->check(CLI::IsMember({"q2", "q4"}));
  app->add_option("--seed", o->seed,
                  "Seed of the synthetic weights and of the random prompt (default 42)");
  app->add_option("--backend", o->backend, "cpu, cuda or auto (default auto)")
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}));
  app->add_option("-t,--threads", o->threads, "CPU threads (default: all)");
  app->add_option("--prompt-file", o->prompt_file,
                  "Benchmark text, tokenized as plain text and repeated up to --ctx-max (default: "
                  "random ordinary tokens)")
      ->check(CLI::ExistingFile);
  app->add_option("--ctx-start", o->bench.ctx_start, "First measured frontier (default 2048)")
      ->check(CLI::PositiveNumber);
  app->add_option("--ctx-max", o->bench.ctx_max, "Last measured frontier (default 32768)")
      ->check(CLI::PositiveNumber);
  CLI::Option* incr = app->add_option("--step-incr", o->bench.step_incr,
                                      "Linear step between frontiers (default "
                                      "2048)")
                          ->check(CLI::PositiveNumber);
  CLI::Option* mul =
      app->add_option("--step-mul", o->bench.step_mul,
                      "Multiplicative step between frontiers, > 1 (default 1: linear steps)")
          ->check(CLI::Range(1.0, 1e6));
  incr->excludes(mul);
  app->add_option("--gen-tokens", o->bench.gen_tokens,
                  "Greedy decode tokens per frontier and session (default 128)")
      ->check(CLI::PositiveNumber);
  app->add_option("--batch", o->bench.batch,
                  "Sessions walking the frontiers together; rates are aggregate (default 1)")
      ->check(CLI::Range(1, 4096));
  app->add_option("-c,--ctx", o->context,
                  "Engine context in tokens (default: --ctx-max + --gen-tokens)")
      ->check(CLI::PositiveNumber);
  app->add_option(
         "--chunk", o->prefill_chunk,
         "Tokens per session and forward call while prefilling (default: the backend's, 512 "
         "on the CPU, 2048 on CUDA)")
      ->check(CLI::PositiveNumber);
  add_gpu_mem_flag(*app, o->gpu_mem_mib);
  app->add_option("--csv", o->csv, "Write the CSV to this file instead of stdout");
  app->callback([o, model, synthetic] {
    if (model->count() == 0 && synthetic->count() == 0) {
      throw CLI::RequiredError("a model (-m MODEL) or --synthetic PRESET");
    }
    try {
      engine::validate_bench_options(o->bench);
    } catch (const std::invalid_argument& e) {
      throw CLI::ValidationError(e.what());
    }
    if (o->context > 0 && o->context < o->bench.ctx_max + o->bench.gen_tokens) {
      throw CLI::ValidationError("--ctx " + std::to_string(o->context) +
                                 " is smaller than --ctx-max + --gen-tokens (" +
                                 std::to_string(o->bench.ctx_max + o->bench.gen_tokens) + ")");
    }
  });
  return {app, [o] { return run_bench(*o); }};
}

}  // namespace magnetar::cli
