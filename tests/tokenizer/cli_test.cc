// `magnetar tokenize` / `magnetar detokenize` on a GGUF holding the V4 tokenizer metadata.
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "run_magnetar.h"
#include "tokenizer_fixture.h"

namespace magnetar::tokenizer {
namespace {

using Result = magnetar::testing::CommandResult;

// `magnetar ARGS` (already shell-quoted).
Result run(const std::string& args) { return magnetar::testing::run_magnetar(args); }

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
  EXPECT_EQ(back.code, 0);
  EXPECT_EQ(back.out, "<｜User｜>你好");
  EXPECT_EQ(run("detokenize " + m + " --ids 19923,3").out, "Hello!");
}

TEST(TokenizeCli, ExitCodes) {
  const std::string m = "-m " + model_path();
  EXPECT_EQ(run("tokenize " + m).code, 2);                           // no input
  EXPECT_EQ(run("tokenize " + m + " --text a --file b").code, 2);    // two inputs
  EXPECT_EQ(run("detokenize " + m + " --ids 1,x").code, 2);          // not an id
  EXPECT_EQ(run("detokenize " + m + " --ids 129280").code, 2);       // outside the vocabulary
  EXPECT_EQ(run("tokenize -m /nonexistent.gguf --text a").code, 2);  // unreadable model

  gguf::GgufMetadata no_merges = testing::v4_tokenizer_metadata();
  no_merges.erase("tokenizer.ggml.merges");
  testing::write_and_open(no_merges, "no-merges.gguf");
  const std::string bad = (magnetar::testing::scratch_dir("tokenizer") / "no-merges.gguf").string();
  EXPECT_EQ(run("tokenize -m " + bad + " --text a").code, 1);  // readable, not usable
}

}  // namespace
}  // namespace magnetar::tokenizer
