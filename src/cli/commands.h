// The subcommands of the `magnetar` binary. Each one registers its options on the root CLI11 app
// and returns the function that runs it; the function's result is the process exit code.
//
// Exit codes shared by every subcommand:
//   0  success
//   1  the input is readable but not acceptable (e.g. a GGUF that is not a valid V4 model)
//   2  the input cannot be used at all (unreadable or corrupt file, bad arguments)
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace magnetar::cli {

struct Command {
  CLI::App* app;
  std::function<int()> run;
};

Command add_inspect_command(CLI::App& root);
Command add_synth_command(CLI::App& root);
Command add_logits_command(CLI::App& root);
Command add_tokenize_command(CLI::App& root);
Command add_detokenize_command(CLI::App& root);
Command add_render_command(CLI::App& root);
Command add_run_command(CLI::App& root);
Command add_chat_command(CLI::App& root);
Command add_serve_command(CLI::App& root);
Command add_bench_command(CLI::App& root);

inline constexpr int kExitOk = 0;
inline constexpr int kExitInvalid = 1;
inline constexpr int kExitError = 2;

}  // namespace magnetar::cli
