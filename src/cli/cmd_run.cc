// `magnetar run`: one prompt, one streamed answer.
//
//   magnetar run -m MODEL.gguf -p "TEXT" [-n N] [--temp T ...] [--system S] [--nothink|--think-max]
//   magnetar run -m MODEL.gguf --prompt-file FILE
//
// The answer streams to stdout (reasoning dim on a terminal, inside <think>...</think> when
// piped); the prefill and decode rates go to stderr. Ctrl+C stops the generation.
#include <fmt/format.h>

#include <fstream>
#include <sstream>

#include "cli/commands.h"
#include "cli/generation_flags.h"

namespace magnetar::cli {
namespace {

struct RunOptions {
  GenerationFlags flags;
  std::string prompt;
  std::string prompt_file;
};

int run_run(const RunOptions& o) {
  std::string prompt = o.prompt;
  if (!o.prompt_file.empty()) {
    std::ifstream in(o.prompt_file, std::ios::binary);
    if (!in) throw std::invalid_argument(o.prompt_file + ": cannot read");
    std::stringstream text;
    text << in.rdbuf();
    prompt = text.str();
  }
  std::unique_ptr<engine::Engine> engine = open_engine(o.flags, o.flags.context);
  engine::Conversation conversation(*engine, o.flags.system);
  apply_thinking_flags(o.flags, conversation);
  warn_if_think_max_context_is_short(conversation);

  install_interrupt_handler();
  ProgressBar bar;
  TextPrinter printer(stdout);
  engine::TurnCallbacks callbacks;
  callbacks.progress = [&](int64_t done, int64_t total) { bar.update(done, total); };
  callbacks.text = [&](std::string_view text, bool reasoning) {
    bar.clear();
    printer.write(text, reasoning);
  };
  engine::TurnStats stats;
  try {
    stats = conversation.reply(prompt, turn_options(o.flags), callbacks, &interrupted());
  } catch (const engine::ContextOverflow& e) {
    bar.clear();
    fmt::print(stderr, "magnetar run: error: the prompt does not fit the context: {} (--ctx)\n",
               e.what());
    return kExitInvalid;
  }
  bar.clear();
  printer.finish();
  print_turn_stats(stats);
  return kExitOk;
}

}  // namespace

Command add_run_command(CLI::App& root) {
  auto o = std::make_shared<RunOptions>();
  CLI::App* app = root.add_subcommand("run", "Answer one prompt, streaming the text");
  add_generation_flags(*app, o->flags);
  CLI::Option* p = app->add_option("-p,--prompt", o->prompt, "The prompt");
  CLI::Option* f = app->add_option("--prompt-file", o->prompt_file, "Read the prompt from a file")
                       ->check(CLI::ExistingFile);
  p->excludes(f);
  app->callback([p, f] {
    if (p->count() == 0 && f->count() == 0) {
      throw CLI::RequiredError("a prompt (-p TEXT or --prompt-file FILE)");
    }
  });
  return {app, [o] { return run_run(*o); }};
}

}  // namespace magnetar::cli
