// magnetar: the command-line front end. Subcommands are thin wrappers over libmagnetar.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <exception>
#include <vector>

#include "cli/commands.h"

int main(int argc, char** argv) {
  using namespace magnetar::cli;
  CLI::App app{"Magnetar: a DeepSeek V4 Flash/Pro inference engine for NVIDIA GPUs", "magnetar"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "magnetar 0.1.0");
  std::vector<Command> commands = {add_run_command(app),        add_chat_command(app),
                                   add_inspect_command(app),    add_synth_command(app),
                                   add_logits_command(app),     add_tokenize_command(app),
                                   add_detokenize_command(app), add_render_command(app),
                                   add_serve_command(app),      add_bench_command(app)};
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? kExitOk : kExitError;
  }
  for (const Command& c : commands) {
    if (!c.app->parsed()) continue;
    try {
      return c.run();
    } catch (const std::exception& e) {
      fmt::print(stderr, "magnetar {}: error: {}\n", c.app->get_name(), e.what());
      return kExitError;
    }
  }
  return kExitError;
}
