// `magnetar tokenize` / `magnetar detokenize` on a GGUF holding the V4 tokenizer metadata.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "tokenizer_fixture.h"

namespace magnetar::tokenizer {
namespace {

struct Result {
  int status;
  std::string out;
};

// Runs the magnetar binary with `args` (already shell-quoted), capturing stdout.
Result run(const std::string& args) {
  const std::string command = std::string(MAGNETAR_BINARY) + " " + args + " 2>/dev/null";
  FILE* pipe = popen(command.c_str(), "r");
  Result r{-1, ""};
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof(buf), pipe)) > 0;) r.out.append(buf, n);
  const int status = pclose(pipe);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string model_path() {
  static const std::string path = [] {
    testing::write_and_open(testing::v4_tokenizer_metadata(), "cli.gguf");
    return (magnetar::testing::scratch_dir("tokenizer") / "cli.gguf").string();
  }();
  return path;
}

TEST(TokenizeCli, TextToIdsAndBack) {
  const std::string m = "-m " + model_path();
  EXPECT_EQ(run("tokenize " + m + " --text '<｜User｜>你好'").out,
            "[30,28217,6756,28217,32,30594]\n");
  EXPECT_EQ(run("tokenize " + m + " --text '<｜User｜>你好' --special").out, "[128803,30594]\n");
  const std::string file = (magnetar::testing::scratch_dir("tokenizer") / "ids.json").string();
  std::ofstream(file) << "[128803, 30594]\n";
  const Result back = run("detokenize " + m + " --file " + file);
  EXPECT_EQ(back.status, 0);
  EXPECT_EQ(back.out, "<｜User｜>你好");
  EXPECT_EQ(run("detokenize " + m + " --ids 19923,3").out, "Hello!");
}

TEST(TokenizeCli, ExitCodes) {
  const std::string m = "-m " + model_path();
  EXPECT_EQ(run("tokenize " + m).status, 2);                           // no input
  EXPECT_EQ(run("tokenize " + m + " --text a --file b").status, 2);    // two inputs
  EXPECT_EQ(run("detokenize " + m + " --ids 1,x").status, 2);          // not an id
  EXPECT_EQ(run("detokenize " + m + " --ids 129280").status, 2);       // outside the vocabulary
  EXPECT_EQ(run("tokenize -m /nonexistent.gguf --text a").status, 2);  // unreadable model

  gguf::GgufMetadata no_merges = testing::v4_tokenizer_metadata();
  no_merges.erase("tokenizer.ggml.merges");
  testing::write_and_open(no_merges, "no-merges.gguf");
  const std::string bad = (magnetar::testing::scratch_dir("tokenizer") / "no-merges.gguf").string();
  EXPECT_EQ(run("tokenize -m " + bad + " --text a").status, 1);  // readable, not usable
}

}  // namespace
}  // namespace magnetar::tokenizer
