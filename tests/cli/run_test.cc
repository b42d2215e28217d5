// `magnetar run` as a user runs it: deterministic greedy and seeded output, reasoning marked
// when piped, the same answer as the library gives, and clear errors for bad input.
#include <gtest/gtest.h>

#include <fstream>

#include "engine/conversation.h"
#include "run_magnetar.h"
#include "scratch_dir.h"
#include "tiny_model.h"

namespace magnetar {
namespace {

using testing::CommandResult;
using testing::run_magnetar;

std::string tiny() { return testing::tiny_model("q2", 3, /*with_mtp=*/false).string(); }

TEST(Run, GreedyRunsAreDeterministicAndMarkReasoningWhenPiped) {
  const std::vector<std::string> args = {"run", "-m", tiny(),   "-p", "hi",
                                         "-n",  "16", "--temp", "0"};
  CommandResult a = run_magnetar(args), b = run_magnetar(args);
  ASSERT_EQ(a.code, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
  EXPECT_EQ(a.out.rfind("<think>", 0), 0u) << "piped reasoning starts with a marker: " << a.out;
  EXPECT_NE(a.err.find("decode: 16 tokens"), std::string::npos) << a.err;
  EXPECT_NE(a.err.find("prefill: "), std::string::npos) << a.err;
}

TEST(Run, PrintsWhatTheLibraryGenerates) {
  engine::EngineOptions o;
  o.model = tiny();
  o.context = 32768;
  engine::Engine engine(o);
  engine::Conversation conversation(engine, "Be brief.");
  conversation.set_thinking(chat::ThinkingMode::kChat, chat::ReasoningEffort::kHigh);
  engine::TurnOptions turn;
  turn.sampling.temperature = 0;
  turn.max_tokens = 12;
  conversation.reply("What is a magnetar?", turn, {});
  const std::string expected = conversation.messages().back().content + "\n";

  CommandResult r = run_magnetar({"run", "-m", tiny(), "--system", "Be brief.", "--nothink", "-p",
                                  "What is a magnetar?", "-n", "12", "--temp", "0"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, expected);
}

TEST(Run, PromptFileEqualsPromptText) {
  const std::filesystem::path file = testing::scratch_dir("run") / "prompt.txt";
  std::ofstream(file) << "Summarize:\nline one\nline two";
  CommandResult from_file =
      run_magnetar({"run", "-m", tiny(), "--prompt-file", file.string(), "-n", "8", "--temp", "0"});
  CommandResult from_text = run_magnetar(
      {"run", "-m", tiny(), "-p", "Summarize:\nline one\nline two", "-n", "8", "--temp", "0"});
  ASSERT_EQ(from_file.code, 0) << from_file.err;
  EXPECT_EQ(from_file.out, from_text.out);
}

TEST(Run, SeededSamplingIsReproducible) {
  auto sample = [](const std::string& seed) {
    return run_magnetar({"run", "-m", tiny(), "-p", "pick", "-n", "12", "--temp", "0.9", "--seed",
                         seed, "--top-k", "50", "--top-p", "0.95"})
        .out;
  };
  EXPECT_EQ(sample("7"), sample("7"));
  EXPECT_NE(sample("7"), sample("8"));
}

TEST(Run, BadInputGetsAClearErrorAndExitCode) {
  auto expect_error = [](const std::vector<std::string>& args, int code, const std::string& text) {
    CommandResult r = run_magnetar(args);
    EXPECT_TRUE(r.exited);
    EXPECT_EQ(r.code, code) << r.err;
    EXPECT_NE(r.err.find(text), std::string::npos) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  };
  expect_error({"run", "-m", tiny()}, 2, "prompt");
  expect_error({"run", "-m", tiny(), "-p", "a", "--prompt-file", "/etc/hostname"}, 2, "excludes");
  expect_error({"run", "-m", "/no/such.gguf", "-p", "a"}, 2, "does not exist");
  expect_error({"run", "-m", tiny(), "-p", "a", "--temp", "-1"}, 2, "--temp");
  expect_error({"run", "-m", tiny(), "-p", "a", "--think", "--nothink"}, 2, "excludes");
  expect_error({"run", "-m", tiny(), "-p", "a", "--backend", "tpu"}, 2, "--backend");
  expect_error(
      {"run", "-m", tiny(), "--ctx", "8", "-p", "a prompt longer than eight tokens, surely"}, 1,
      "does not fit the context");
}

}  // namespace
}  // namespace magnetar
