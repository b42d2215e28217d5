#include "cli/generation_flags.h"

#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <csignal>

#include "cli/cli_format.h"

namespace magnetar::cli {
namespace {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

constexpr const char* kDim = "\033[2m";
constexpr const char* kReset = "\033[0m";
constexpr int64_t kThinkMaxAdvisedContext = 393216;

std::atomic<bool> g_interrupted{false};

extern "C" void magnetar_on_interrupt(int) { g_interrupted.store(true); }

}  // namespace

void install_interrupt_handler() {
  struct sigaction sa {};
  sa.sa_handler = magnetar_on_interrupt;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
}

std::atomic<bool>& interrupted() { return g_interrupted; }

void add_gpu_mem_flag(CLI::App& app, uint64_t& mib) {
  app.add_option("--gpu-mem", mib,
                 "CUDA: MiB of device memory for the weights; routed experts beyond it stay in "
                 "host memory (default: the free memory less a reserve)")
      ->check(CLI::PositiveNumber);
}

void add_generation_flags(CLI::App& app, GenerationFlags& f) {
  app.add_option("-m,--model", f.model, "The GGUF model")->required()->check(CLI::ExistingFile);
  app.add_option("--backend", f.backend, "cpu, cuda or auto (default auto)")
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}));
  app.add_option("-c,--ctx", f.context, "Context size in tokens (default 32768)")
      ->check(CLI::PositiveNumber);
  app.add_option("-t,--threads", f.threads, "CPU threads (default: all)");
  add_gpu_mem_flag(app, f.gpu_mem_mib);
  app.add_option("-s,--system", f.system, "System prompt");
  app.add_option("-n,--tokens", f.max_tokens, "Most tokens to generate per answer (default 50000)")
      ->check(CLI::PositiveNumber);
  app.add_option("--temp", f.temperature, "Temperature; 0 is greedy (default 1)")
      ->check(CLI::Range(0.0f, 100.0f));
  app.add_option("--top-k", f.top_k, "Keep the k most likely tokens; 0 off (default)")
      ->check(CLI::Range(0, 1 << 30));
  app.add_option("--top-p", f.top_p, "Nucleus sampling threshold in (0, 1] (default 1: off)")
      ->check(CLI::Range(0.0f, 1.0f));
  app.add_option("--min-p", f.min_p, "Minimum probability relative to the top token (default 0.05)")
      ->check(CLI::Range(0.0f, 1.0f));
  app.add_option("--seed", f.seed, "Random seed; 0 draws a fresh one (default 0)");
  CLI::Option* think = app.add_flag("--think", f.think, "Thinking mode, high effort (default)");
  CLI::Option* max = app.add_flag("--think-max", f.think_max, "Thinking mode, maximum effort");
  CLI::Option* no = app.add_flag("--nothink", f.nothink, "Answer without thinking");
  think->excludes(max)->excludes(no);
  max->excludes(no);
}

std::unique_ptr<engine::Engine> open_engine(const GenerationFlags& f, int64_t context) {
  engine::EngineOptions o;
  o.model = f.model;
  o.backend = f.backend;
  o.threads = f.threads;
  o.context = context;
  o.gpu_mem_mib = f.gpu_mem_mib;
  auto engine = std::make_unique<engine::Engine>(o);
  if (engine->synthetic()) {
    fmt::print(stderr,
               "magnetar: {} is a synthetic model with RANDOM WEIGHTS: its output is noise\n",
               f.model);
  }
  return engine;
}

engine::TurnOptions turn_options(const GenerationFlags& f) {
  engine::TurnOptions o;
  o.sampling.temperature = f.temperature;
  o.sampling.top_k = f.top_k;
  o.sampling.top_p = f.top_p;
  o.sampling.min_p = f.min_p;
  if (f.seed != 0) o.sampling.seed = f.seed;
  o.max_tokens = f.max_tokens;
  return o;
}

void apply_thinking_flags(const GenerationFlags& f, engine::Conversation& c) {
  if (f.nothink) {
    c.set_thinking(chat::ThinkingMode::kChat, chat::ReasoningEffort::kHigh);
  } else {
    c.set_thinking(chat::ThinkingMode::kThinking,
                   f.think_max ? chat::ReasoningEffort::kMax : chat::ReasoningEffort::kHigh);
  }
}

void warn_if_think_max_context_is_short(const engine::Conversation& c) {
  if (c.thinking_max() && c.engine().context() < kThinkMaxAdvisedContext) {
    fmt::print(stderr,
               "magnetar: note: Think-Max works best with a context of at least {} tokens "
               "(this one has {})\n",
               kThinkMaxAdvisedContext, c.engine().context());
  }
}

TextPrinter::TextPrinter(std::FILE* out) : out_(out), terminal_(isatty(fileno(out)) != 0) {}

void TextPrinter::write(std::string_view text, bool reasoning) {
  if (text.empty()) return;
  if (reasoning != in_reasoning_) {
    if (terminal_) {
      std::fputs(reasoning ? kDim : kReset, out_);
      if (!reasoning && !at_line_start_) std::fputc('\n', out_);
    } else {
      std::fputs(reasoning ? "<think>" : "</think>\n", out_);
    }
    in_reasoning_ = reasoning;
  }
  std::fwrite(text.data(), 1, text.size(), out_);
  at_line_start_ = text.back() == '\n';
  std::fflush(out_);
}

void TextPrinter::finish() {
  if (in_reasoning_) {
    std::fputs(terminal_ ? kReset : "</think>", out_);
    in_reasoning_ = false;
  }
  if (!at_line_start_) std::fputc('\n', out_);
  at_line_start_ = true;
  std::fflush(out_);
}

ProgressBar::ProgressBar() : terminal_(isatty(STDERR_FILENO) != 0), start_(now_seconds()) {}

void ProgressBar::update(int64_t done, int64_t total) {
  if (!terminal_ || total <= 0) return;
  constexpr int kWidth = 30;
  const int filled = static_cast<int>(kWidth * done / total);
  const double elapsed = now_seconds() - start_;
  fmt::print(stderr, "\r\033[Kprefill [{}{}] {}/{} tokens, {:.1f} tok/s", std::string(filled, '#'),
             std::string(kWidth - filled, ' '), thousands(done), thousands(total),
             elapsed > 0 ? done / elapsed : 0.0);
  drawn_ = true;
}

void ProgressBar::clear() {
  if (drawn_) fmt::print(stderr, "\r\033[K");
  drawn_ = false;
}

void print_turn_stats(const engine::TurnStats& s) {
  auto rate = [](int64_t n, double seconds) { return seconds > 0 ? n / seconds : 0.0; };
  fmt::print(stderr,
             "prefill: {} tokens at {:.1f} tok/s ({} cached), decode: {} tokens at {:.1f} tok/s "
             "({})\n",
             thousands(s.prefill_tokens), rate(s.prefill_tokens, s.prefill_seconds),
             thousands(s.cached_tokens), thousands(s.generated_tokens),
             rate(s.generated_tokens, s.decode_seconds), engine::finish_reason_name(s.finish));
}

}  // namespace magnetar::cli
