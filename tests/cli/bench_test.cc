// `magnetar bench` as a user runs it on the tiny model and the CPU backend: ds4-bench's CSV on
// stdout, one row per frontier, the batch column, --csv, and exit code 2 with a clear message for
// every bad flag.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "run_magnetar.h"
#include "scratch_dir.h"
#include "tiny_model.h"

namespace magnetar {
namespace {

using testing::CommandResult;
using testing::run_magnetar;

std::string tiny() { return testing::tiny_model("q2", 3, /*with_mtp=*/false).string(); }

std::vector<std::vector<std::string>> csv(const std::string& text) {
  std::vector<std::vector<std::string>> rows;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    std::vector<std::string>& row = rows.emplace_back();
    std::istringstream cells(line);
    for (std::string cell; std::getline(cells, cell, ',');) row.push_back(cell);
  }
  return rows;
}

std::string prompt_file() {
  const std::filesystem::path path = testing::scratch_dir("bench_cli") / "prompt.txt";
  std::ofstream(path) << "Quel ramo del lago di Como, che volge a mezzogiorno.";
  return path.string();
}

TEST(BenchCli, PrintsOneCsvRowPerFrontier) {
  const CommandResult r = run_magnetar({"bench", "-m", tiny(), "--backend", "cpu", "--prompt-file",
                                        prompt_file(), "--ctx-start", "16", "--ctx-max", "40",
                                        "--step-incr", "12", "--gen-tokens", "3"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto rows = csv(r.out);
  ASSERT_EQ(rows.size(), 4u) << r.out;
  EXPECT_EQ(rows[0], (std::vector<std::string>{"ctx_tokens", "prefill_tokens", "prefill_tps",
                                               "gen_tokens", "gen_tps", "kvcache_bytes"}));
  const std::vector<std::string> frontiers = {"16", "28", "40"}, prefills = {"16", "12", "12"};
  for (size_t i = 1; i < rows.size(); ++i) {
    ASSERT_EQ(rows[i].size(), 6u) << r.out;
    EXPECT_EQ(rows[i][0], frontiers[i - 1]);
    EXPECT_EQ(rows[i][1], prefills[i - 1]);
    EXPECT_GT(std::stod(rows[i][2]), 0);
    EXPECT_EQ(rows[i][3], "3");
    EXPECT_GT(std::stod(rows[i][4]), 0);
    EXPECT_GT(std::stoull(rows[i][5]), 0u);
  }
  EXPECT_LT(std::stoull(rows[1][5]), std::stoull(rows[3][5]));
  EXPECT_NE(r.err.find("repeated"), std::string::npos) << r.err;  // the text is shorter than 40
  EXPECT_NE(r.err.find("summary"), std::string::npos) << r.err;
}

TEST(BenchCli, BatchAddsAColumnAndCsvGoesToAFile) {
  const std::filesystem::path out = testing::scratch_dir("bench_cli") / "out.csv";
  const CommandResult r = run_magnetar({"bench", "-m", tiny(), "--backend", "cpu", "--ctx-start",
                                        "8", "--ctx-max", "32", "--step-mul", "2", "--gen-tokens",
                                        "2", "--batch", "3", "--csv", out.string()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "");
  std::ifstream in(out);
  const auto rows = csv(std::string(std::istreambuf_iterator<char>(in), {}));
  ASSERT_EQ(rows.size(), 4u);  // 8, 16, 32
  EXPECT_EQ(rows[0].back(), "batch");
  EXPECT_EQ(rows[0].front(), "ctx_tokens");
  for (size_t i = 1; i < rows.size(); ++i) {
    ASSERT_EQ(rows[i].size(), 7u);
    EXPECT_EQ(rows[i][0], std::to_string(8 << (i - 1)));
    EXPECT_EQ(rows[i][6], "3");
  }
}

TEST(BenchCli, BadFlagsExitWith2AndSayWhy) {
  const std::string m = tiny();
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"bench", "-m", m, "--ctx-start", "64", "--ctx-max", "32"}, "--ctx-start must be <="},
      {{"bench", "-m", m, "--step-mul", "0.5"}, "--step-mul"},
      {{"bench", "-m", m, "--step-mul", "2", "--step-incr", "8"}, "excludes"},
      {{"bench", "-m", m, "--ctx-start", "8", "--ctx-max", "64", "--gen-tokens", "8", "--ctx",
        "70"},
       "smaller than --ctx-max + --gen-tokens"},
      {{"bench", "--ctx-max", "64"}, "--synthetic"},
      {{"bench", "-m", m, "--synthetic", "tiny"}, "excludes"},
      {{"bench", "--synthetic", "huge"}, "huge"},
      {{"bench", "--synthetic", "tiny", "--synthetic-types", "q3"}, "q3"},
      {{"bench", "-m", m, "--gen-tokens", "0"}, "--gen-tokens"},
      {{"bench", "-m", m, "--batch", "0"}, "--batch"},
      {{"bench", "-m", m, "--gpu-mem", "-1"}, "--gpu-mem"},
      {{"bench", "-m", m, "--prompt-file", "/nonexistent/prompt.txt"}, "prompt.txt"},
      {{"bench", "--synthetic", "tiny", "--backend", "cpu", "--ctx-start", "8", "--ctx-max", "64"},
       "CUDA backend"},
  };
  for (const Case& c : cases) {
    std::string joined;
    for (const std::string& a : c.args) joined += a + " ";
    SCOPED_TRACE(joined);
    const CommandResult r = run_magnetar(c.args);
    EXPECT_TRUE(r.exited);
    EXPECT_EQ(r.code, 2) << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << r.err;
    EXPECT_EQ(r.out, "");
  }
}

}  // namespace
}  // namespace magnetar
