// Runs the `magnetar` binary the way a user's shell would, for the CLI tests of every folder.
//
// The command goes through /bin/sh with `exec`, so the exit status is the binary's own: a crash
// shows as `exited == false` rather than as a shell exit code.
#pragma once

#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "scratch_dir.h"

namespace magnetar::testing {

struct CommandResult {
  bool exited = false;  // false: killed by a signal
  int code = -1;        // exit code when exited
  std::string out, err;
};

// Quotes one argument for /bin/sh.
inline std::string shell_quote(const std::string& arg) {
  std::string q = "'";
  for (char c : arg) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// Runs MAGNETAR_BINARY with `args` (already shell-quoted) and `input` on stdin.
inline CommandResult run_magnetar(const std::string& args, const std::string& input = "") {
  const std::filesystem::path dir = scratch_dir("run_magnetar");
  const std::filesystem::path in = dir / "stdin", out = dir / "stdout", err = dir / "stderr";
  std::ofstream(in, std::ios::binary) << input;
  const std::string command = "exec " + std::string(MAGNETAR_BINARY) + " " + args + " < " +
                              in.string() + " > " + out.string() + " 2> " + err.string();
  const int status = std::system(command.c_str());
  auto slurp = [](const std::filesystem::path& p) {
    std::ifstream f(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
  };
  CommandResult r;
  r.exited = WIFEXITED(status);
  r.code = r.exited ? WEXITSTATUS(status) : -1;
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

// The same with one argument per element, each quoted.
inline CommandResult run_magnetar(const std::vector<std::string>& args) {
  std::string joined;
  for (const std::string& a : args) joined += (joined.empty() ? "" : " ") + shell_quote(a);
  return run_magnetar(joined);
}

}  // namespace magnetar::testing
