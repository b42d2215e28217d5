// DeepSeek's four test vectors for encoding_dsv4.py (MIT-licensed with the V4 weights; copied
// from supermy/ds4rs encoding/tests, official-encoding.md §0.2): each input must render to the
// output file exactly, in the mode DeepSeek's own test uses.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "chat/completion_parser.h"
#include "chat/deepseek_messages.h"
#include "chat/python_json.h"
#include "chat/renderer.h"

namespace magnetar::chat {
namespace {

std::string read_data(const std::string& name) {
  std::ifstream in(std::string(MAGNETAR_CHAT_TEST_DATA) + "/" + name, std::ios::binary);
  EXPECT_TRUE(in) << name;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string render_vector(int n, ThinkingMode mode) {
  auto input =
      nlohmann::ordered_json::parse(read_data("test_input_" + std::to_string(n) + ".json"));
  if (input.is_object()) {
    // Vector 1 keeps its tools beside the messages; DeepSeek's test attaches them to message 0.
    input["messages"][0]["tools"] = input["tools"];
    input = input["messages"];
  }
  RenderOptions options;
  options.mode = mode;
  return render_text(messages_from_deepseek_json(input), options);
}

TEST(DeepSeekTestVectors, ThinkingWithToolCalls) {
  EXPECT_EQ(render_vector(1, ThinkingMode::kThinking), read_data("test_output_1.txt"));
}

// As DeepSeek's test: the assistant turns of vector 1 parse back into their messages.
TEST(DeepSeekTestVectors, AssistantTurnsParse) {
  const std::string prompt = read_data("test_output_1.txt");
  const std::string marker = "<｜Assistant｜><think>";
  size_t first = prompt.find(marker) + marker.size();
  size_t first_end = prompt.find("<｜User｜>", first);
  ParsedCompletion call = parse_completion(
      std::string_view(prompt).substr(first, first_end - first), ThinkingMode::kThinking);
  ASSERT_FALSE(call.error) << call.error->message;
  EXPECT_EQ(call.message.reasoning,
            "The user wants to know the weather in Beijing. I should use the get_weather tool.");
  EXPECT_EQ(call.message.content, "");
  ASSERT_EQ(call.message.tool_calls.size(), 1u);
  EXPECT_EQ(call.message.tool_calls[0].name, "get_weather");
  EXPECT_EQ(*parse_python_json(call.message.tool_calls[0].arguments.get<std::string>()),
            nlohmann::ordered_json::parse(R"({"location": "Beijing", "unit": "celsius"})"));

  ParsedCompletion last =
      parse_completion(std::string_view(prompt).substr(prompt.rfind(marker) + marker.size()),
                       ThinkingMode::kThinking);
  ASSERT_FALSE(last.error) << last.error->message;
  EXPECT_EQ(last.message.reasoning, "Got the weather data. Let me format a nice response.");
  EXPECT_NE(last.message.content.find("22°C"), std::string::npos);
  EXPECT_TRUE(last.message.tool_calls.empty());
}

TEST(DeepSeekTestVectors, ThinkingDropsEarlierReasoning) {
  EXPECT_EQ(render_vector(2, ThinkingMode::kThinking), read_data("test_output_2.txt"));
}

TEST(DeepSeekTestVectors, DeveloperToolsAndLatestReminder) {
  EXPECT_EQ(render_vector(3, ThinkingMode::kThinking), read_data("test_output_3.txt"));
}

TEST(DeepSeekTestVectors, ChatWithActionTask) {
  EXPECT_EQ(render_vector(4, ThinkingMode::kChat), read_data("test_output_4.txt"));
}

}  // namespace
}  // namespace magnetar::chat
