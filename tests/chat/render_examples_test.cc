// The worked examples of official-encoding.md §4, each rendered byte for byte: the rendered text
// must have the byte count and SHA-256 the spec gives (and, for the short ones, equal its text).
#include <gtest/gtest.h>

#include <string>

#include "chat/deepseek_messages.h"
#include "chat/renderer.h"
#include "sha256.h"

namespace magnetar::chat {
namespace {

using testing::sha256_hex;

struct Example {
  const char* name;
  const char* messages;  // the encoder's own message format
  ThinkingMode mode;
  ReasoningEffort effort;
  bool drop_thinking;
  size_t bytes;
  const char* sha256;
  const char* text;  // nullptr where the spec's text is too long to repeat here
};

constexpr ThinkingMode kChat = ThinkingMode::kChat;
constexpr ThinkingMode kThinking = ThinkingMode::kThinking;
constexpr ReasoningEffort kHigh = ReasoningEffort::kHigh;

#define SYS R"({"role": "system", "content": "You are a helpful assistant."})"
#define E4                                                                    \
  SYS R"(, {"role": "user", "content": "Hello"}, )"                           \
      R"({"role": "assistant", "reasoning_content": "The user greets me.", )" \
      R"("content": "Hi! How can I help?"}, {"role": "user", "content": "Capital of France?"})"
#define E5_TOOLS                                                                               \
  R"([{"type": "function", "function": {"name":"get_weather","description":"Get the weather )" \
  R"(for a city","parameters":{"type":"object","properties":{"city":{"type":"string"},)"       \
  R"("days":{"type":"integer"}},"required":["city"]}}}])"
#define E5                                                                                \
  R"({"role": "system", "content": "You are a helpful assistant.", "tools": )" E5_TOOLS   \
  R"(}, {"role": "user", "content": "Weather in Beijing and Shanghai?"}, )"               \
  R"({"role": "assistant", "reasoning_content": "Call the tool twice.", "content": "", )" \
  R"("tool_calls": [{"id": "call_1", "type": "function", )"                               \
  R"("function": {"name": "get_weather", "arguments": "{\"city\": \"Beijing\"}"}}, )"     \
  R"({"id": "call_2", "type": "function", "function": {"name": "get_weather", )"          \
  R"("arguments": "{\"city\": \"Shanghai\", \"days\": 2}"}}]}, )"                         \
  R"({"role": "tool", "tool_call_id": "call_2", "content": "Shanghai: 25°C, rain"}, )"   \
  R"({"role": "tool", "tool_call_id": "call_1", "content": "Beijing: 22°C, sunny"})"
#define E6 SYS R"(, {"role": "developer", "content": "Answer in one word."})"
#define E6B                                                                              \
  E6 R"(, {"role": "assistant", "reasoning_content": "ok", "content": "Understood."}, )" \
     R"({"role": "user", "content": "Sky colour?"})"

const Example kExamples[] = {
    {"E1", R"({"role": "user", "content": "Hello"})", kChat, kHigh, true, 71,
     "afa5497cfd279bf5742dd64e8883fbccfacfd1a84a5b6451b00ca7fb77d286cc",
     "<｜begin▁of▁sentence｜><｜User｜>Hello<｜Assistant｜></think>"},
    {"E2", SYS R"(, {"role": "user", "content": "What is 2+2?"})", kChat, kHigh, true, 106,
     "f457fe75245b0f28b72adbb32bb28d44fb8d9f35c4892d0065df377065eb4c03",
     "<｜begin▁of▁sentence｜>You are a helpful assistant.<｜User｜>What is "
     "2+2?<｜Assistant｜></think>"},
    {"E3", SYS R"(, {"role": "user", "content": "What is 2+2?"})", kThinking, kHigh, true, 105,
     "66043ad4425c2d01d29a6772d99d3c39a49e93b4522bc4f9c641bbaa876461c6",
     "<｜begin▁of▁sentence｜>You are a helpful assistant.<｜User｜>What is "
     "2+2?<｜Assistant｜><think>"},
    {"E4a", E4, kThinking, kHigh, true, 199,
     "5d08da1f7ba744c2940bdb483c737797997155a43432b5698cabcc1f3469d4b8",
     "<｜begin▁of▁sentence｜>You are a helpful assistant.<｜User｜>Hello<｜Assistant｜></think>Hi! "
     "How can I help?<｜end▁of▁sentence｜><｜User｜>Capital of France?<｜Assistant｜><think>"},
    {"E4b", E4, kChat, kHigh, true, 200,
     "ce10131c7962633400662e7c704ad899b4c9561b5d5ffc2af28cd70651af5b0c", nullptr},
    {"E4c", E4, kThinking, kHigh, false, 225,
     "880097ecfad72b2a93b3eebf194e9281e2708671413eea7be62e991bab2d7a66",
     "<｜begin▁of▁sentence｜>You are a helpful assistant.<｜User｜>Hello<｜Assistant｜><think>The "
     "user greets me.</think>Hi! How can I help?<｜end▁of▁sentence｜><｜User｜>Capital of "
     "France?<｜Assistant｜><think>"},
    {"E4d", E4 R"(, {"role": "assistant", "reasoning_content": "Paris.", "content": "Paris."})",
     kThinking, kHigh, true, 246,
     "88b09d5d07c675e4493a734b9718525de74acfff5641f21847cc82ae3e538772", nullptr},
    {"E5a", E5, kThinking, kHigh, true, 1893,
     "4383a357779e88d50108578948e8649664b70ee2179b9edcab4cd611af4cf34b", nullptr},
    {"E5b", E5 R"(, {"role": "assistant", "reasoning_content": "Both results are in.",
     "content": "Beijing: 22°C and sunny. Shanghai: 25°C with rain."})",
     kThinking, kHigh, true, 2000,
     "449a4466167b1865219244be9fcd1c97e354086e6a60cff84001add40a682c8c", nullptr},
    {"E6a", E6 R"(, {"role": "user", "content": "Sky colour?"})", kChat, kHigh, true, 136,
     "392ae3f9d85b4c22d3b824ec26cc525e6c273cefc9f2c2aa832d027361c0ff46",
     "<｜begin▁of▁sentence｜>You are a helpful assistant.<｜User｜>Answer in one "
     "word.<｜User｜>Sky colour?<｜Assistant｜></think>"},
    {"E6b", E6B, kChat, kHigh, true, 199,
     "75a2c892af295486fb4e8439cd92460a407f94aba17c5e0febec9ca512195fab", nullptr},
    {"E6c", E6B, kThinking, kHigh, true, 142,
     "513bc3959d70f575c41084a111d032762e61765bfbbd36fedc7cb9a1d728e1e1",
     "<｜begin▁of▁sentence｜>You are a helpful "
     "assistant.Understood.<｜end▁of▁sentence｜><｜User｜>Sky colour?<｜Assistant｜><think>"},
    {"E7", SYS R"(, {"role": "user", "content": "Prove it."})", kThinking, ReasoningEffort::kMax,
     true, 578, "c04752b7785f043166ab18a1c1edd5ca56ebd88c711b0e102c61bf62879da4e7", nullptr},
    {"E8",
     SYS R"(, {"role": "latest_reminder", "content": "2026-02-21,Saturday,Guangzhou,App,English"},
     {"role": "user", "content": "What day is it?"})",
     kThinking, kHigh, true, 172,
     "c7529b6a028bd88592209eed846fcd2d8181609571c3b58a29223c8e8a9b5375",
     "<｜begin▁of▁sentence｜>You are a helpful "
     "assistant.<｜latest_reminder｜>2026-02-21,Saturday,Guangzhou,App,English<｜User｜>What day "
     "is "
     "it?<｜Assistant｜><think>"},
    {"E9",
     R"({"role": "system", "content": "You are a helpful assistant.",
     "response_format": {"type": "json_object"}},
     {"role": "user", "content": "List two colours."})",
     kChat, kHigh, true, 216, "485711893da52f04ceb84dfcdc7d1131fd3113a3c3f1b7f65824db50c6de8c43",
     "<｜begin▁of▁sentence｜>You are a helpful assistant.\n\n## Response Format:\n\nYou MUST "
     "strictly adhere to the following schema to reply:\n{\"type\": \"json_object\"}<｜User｜>List "
     "two colours.<｜Assistant｜></think>"},
    {"E10a", R"({"role": "user", "content": "Latest news on X?", "task": "action"})", kThinking,
     kHigh, true, 96, "46b1d523426d2f18e0a018be8f1a2caced87d63217039bc35d72998af6b28118",
     "<｜begin▁of▁sentence｜><｜User｜>Latest news on X?<｜Assistant｜><think><｜action｜>"},
    {"E10b", R"({"role": "user", "content": "Latest news on X?", "task": "query"})", kChat, kHigh,
     true, 71, "05d6abae80ee1ca9f45ad2ce4c03d5144fd791231c04db67fe6ae196c0bca623",
     "<｜begin▁of▁sentence｜><｜User｜>Latest news on X?<｜query｜>"},
    {"E10c",
     R"({"role": "user", "content": "Hi"},
     {"role": "assistant", "content": "Hello!", "task": "title"})",
     kChat, kHigh, true, 114, "55e11fcf5d108272f2ab7a9abff6f5fc713937546d1a6e521505e4eed2b059c1",
     "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜></"
     "think>Hello!<｜end▁of▁sentence｜><｜title｜>"},
    {"E11",
     R"({"role": "user", "content": "Go"},
     {"role": "assistant", "content": "", "tool_calls": [
       {"function": {"name": "now", "arguments": "{}"}},
       {"function": {"name": "set", "arguments": "{\"path\":\"a&b<c>\",\"n\":1.50,\"ok\":true,)"
     R"(\"tags\":[\"x\",\"y\"],\"meta\":{\"k\":null}}"}},
       {"function": {"name": "raw", "arguments": "not json"}}]})",
     kChat, kHigh, true, 760, "6a70fc2ff2ea2e69083e8b0b17e6dc7cfbe829289864eea44ab61fb62b362d7c",
     "<｜begin▁of▁sentence｜><｜User｜>Go<｜Assistant｜></think>\n\n<｜DSML｜tool_calls>\n"
     "<｜DSML｜invoke name=\"now\">\n\n</｜DSML｜invoke>\n<｜DSML｜invoke name=\"set\">\n"
     "<｜DSML｜parameter name=\"path\" string=\"true\">a&b<c></｜DSML｜parameter>\n"
     "<｜DSML｜parameter name=\"n\" string=\"false\">1.5</｜DSML｜parameter>\n"
     "<｜DSML｜parameter name=\"ok\" string=\"false\">true</｜DSML｜parameter>\n"
     "<｜DSML｜parameter name=\"tags\" string=\"false\">[\"x\", \"y\"]</｜DSML｜parameter>\n"
     "<｜DSML｜parameter name=\"meta\" string=\"false\">{\"k\": null}</｜DSML｜parameter>\n"
     "</｜DSML｜invoke>\n<｜DSML｜invoke name=\"raw\">\n"
     "<｜DSML｜parameter name=\"arguments\" string=\"true\">not json</｜DSML｜parameter>\n"
     "</｜DSML｜invoke>\n</｜DSML｜tool_calls><｜end▁of▁sentence｜>"},
};

std::string render_example(const Example& e) {
  auto messages = nlohmann::ordered_json::parse(std::string("[") + e.messages + "]");
  RenderOptions options;
  options.mode = e.mode;
  options.effort = e.effort;
  options.drop_thinking = e.drop_thinking;
  return render_text(messages_from_deepseek_json(messages), options);
}

class WorkedExample : public ::testing::TestWithParam<Example> {};

TEST_P(WorkedExample, RendersByteForByte) {
  const Example& e = GetParam();
  std::string text = render_example(e);
  if (e.text) {
    EXPECT_EQ(text, e.text);
  }
  EXPECT_EQ(text.size(), e.bytes);
  EXPECT_EQ(sha256_hex(text), e.sha256) << text;
}

INSTANTIATE_TEST_SUITE_P(OfficialEncoding, WorkedExample, ::testing::ValuesIn(kExamples),
                         [](const auto& info) { return std::string(info.param.name); });

// E4d and E5b are byte extensions of E4a and E5a (§4): the generated turn appends to the prompt.
TEST(WorkedExample, GeneratedTurnExtendsThePrompt) {
  std::string e4a = render_example(kExamples[3]);
  std::string e4d = render_example(kExamples[6]);
  EXPECT_EQ(e4d, e4a + "Paris.</think>Paris.<｜end▁of▁sentence｜>");
  std::string e5a = render_example(kExamples[7]);
  std::string e5b = render_example(kExamples[8]);
  EXPECT_EQ(e5b, e5a +
                     "Both results are in.</think>Beijing: 22°C and sunny. Shanghai: 25°C with "
                     "rain.<｜end▁of▁sentence｜>");
}

}  // namespace
}  // namespace magnetar::chat
