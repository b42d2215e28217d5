// OpenAI and Anthropic requests → messages and options (official-encoding.md §1.10,
// server-api.md §5.1/§5.4), checked through the prompt they render.
#include <gtest/gtest.h>

#include <string>

#include "chat/anthropic_request.h"
#include "chat/chat_error.h"
#include "chat/openai_request.h"
#include "chat/renderer.h"

namespace magnetar::chat {
namespace {

using Json = nlohmann::ordered_json;

const std::string kBos = "<｜begin▁of▁sentence｜>";
const std::string kEos = "<｜end▁of▁sentence｜>";

std::string openai(const std::string& request) {
  ChatRequest r = chat_request_from_openai(Json::parse(request));
  return render_text(r.messages, r.options);
}

std::string anthropic(const std::string& request) {
  ChatRequest r = chat_request_from_anthropic(Json::parse(request));
  return render_text(r.messages, r.options);
}

TEST(OpenAiRequest, ToolLoop) {
  std::string text = openai(R"({
    "model": "deepseek-v4-flash",
    "messages": [
      {"role": "system", "content": "S"},
      {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                                   {"type": "text", "text": "Now."}]},
      {"role": "assistant", "content": null, "reasoning_content": "need tool",
       "tool_calls": [{"id": "call_1", "type": "function",
                       "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
      {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
    ],
    "tools": [{"type": "function",
               "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
    "reasoning_effort": "high"
  })");
  EXPECT_TRUE(text.starts_with(kBos + "S\n\n## Tools\n\n")) << text;
  EXPECT_NE(text.find("{\"name\": \"get_weather\", \"parameters\": {\"type\": \"object\"}}"),
            std::string::npos);
  EXPECT_NE(text.find("<｜User｜>Weather?\n\nNow.<｜Assistant｜><think>need tool</think>\n\n"
                      "<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_weather\">\n"
                      "<｜DSML｜parameter name=\"city\" string=\"true\">Paris</｜DSML｜parameter>\n"
                      "</｜DSML｜invoke>\n</｜DSML｜tool_calls>" +
                      kEos + "<｜User｜><tool_result>sunny</tool_result><｜Assistant｜><think>"),
            std::string::npos)
      << text;
}

TEST(OpenAiRequest, ToolsWithoutSystemInsertAnEmptySystem) {
  std::string text = openai(R"({"messages": [{"role": "user", "content": "u"}],
    "tools": [{"type": "function", "name": "flat", "description": "d"}],
    "response_format": {"type": "json_object"}})");
  EXPECT_TRUE(text.starts_with(kBos + "\n\n## Tools\n\n")) << text;
  EXPECT_NE(text.find("{\"name\": \"flat\", \"description\": \"d\"}"), std::string::npos);
  EXPECT_NE(text.find("tool calls.\n\n\n## Response Format:"), std::string::npos);
}

TEST(OpenAiRequest, RequestToolsReplaceSameNamedOnes) {
  ChatRequest r = chat_request_from_openai(Json::parse(R"({
    "messages": [{"role": "developer", "content": "D",
                  "tools": [{"function": {"name": "a", "description": "old"}},
                            {"function": {"name": "b"}}]},
                 {"role": "user", "content": "u"}],
    "tools": [{"type": "function", "function": {"name": "a", "description": "new"}}]})"));
  ASSERT_EQ(r.messages[0].tools.size(), 2u);
  EXPECT_EQ(r.messages[0].tools[0]["name"], "b");
  EXPECT_EQ(r.messages[0].tools[1]["description"], "new");
}

TEST(OpenAiRequest, ToolChoiceNoneAndTextFormatAddNothing) {
  EXPECT_EQ(openai(R"({"messages": [{"role": "user", "content": "u"}], "thinking": false,
                       "tools": [{"type": "function", "function": {"name": "f"}}],
                       "tool_choice": "none", "response_format": {"type": "text"}})"),
            kBos + "<｜User｜>u<｜Assistant｜></think>");
}

TEST(OpenAiRequest, ThinkingControls) {
  auto options = [](const std::string& fields) {
    return chat_request_from_openai(
               Json::parse(R"({"messages": [{"role": "user", "content": "u"}])" + fields + "}"))
        .options;
  };
  EXPECT_EQ(options("").mode, ThinkingMode::kThinking);
  EXPECT_EQ(options(R"(, "reasoning_effort": "none")").mode, ThinkingMode::kChat);
  EXPECT_EQ(options(R"(, "reasoning_effort": "xhigh")").effort, ReasoningEffort::kMax);
  EXPECT_EQ(options(R"(, "reasoning_effort": "low")").effort, ReasoningEffort::kHigh);
  EXPECT_EQ(options(R"(, "thinking": {"type": "disabled"})").mode, ThinkingMode::kChat);
  EXPECT_EQ(options(R"(, "thinking": false, "reasoning_effort": "max")").mode, ThinkingMode::kChat);
  EXPECT_THROW(options(R"(, "reasoning_effort": "extreme")"), ChatError);
  EXPECT_THROW(options(R"(, "thinking": {"type": "sometimes"})"), ChatError);
}

TEST(OpenAiRequest, FunctionRoleDecodedArgumentsAndRejections) {
  std::string text = openai(R"({"thinking": false, "messages": [
      {"role": "user", "content": "u"},
      {"role": "assistant", "content": "", "tool_calls": [
        {"id": "1", "function": {"name": "f", "arguments": {"n": 1.50}}}]},
      {"role": "function", "tool_call_id": "1", "content": "r"}]})");
  EXPECT_NE(text.find("<｜DSML｜parameter name=\"n\" string=\"false\">1.5</｜DSML｜parameter>"),
            std::string::npos)
      << text;
  EXPECT_TRUE(text.ends_with("<｜User｜><tool_result>r</tool_result><｜Assistant｜></think>"));
  EXPECT_THROW(openai(R"({"messages": [{"role": "user", "content": [
      {"type": "image_url", "image_url": {"url": "x"}}]}]})"),
               ChatError);
  EXPECT_THROW(openai(R"({"model": "m"})"), ChatError);
  EXPECT_THROW(openai(R"({"messages": [{"role": "robot", "content": "x"}]})"), ChatError);
  EXPECT_THROW(openai(R"({"messages": [{"role": 7, "content": "x"}]})"), ChatError);
}

TEST(AnthropicRequest, ToolLoop) {
  std::string text = anthropic(R"({
    "model": "deepseek-v4-flash", "max_tokens": 100,
    "system": [{"type": "text", "text": "x-anthropic-billing-header: y"},
               {"type": "text", "text": "You are helpful."}],
    "tools": [{"name": "get_weather", "description": "Weather",
               "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
    "messages": [
      {"role": "user", "content": "Weather in Paris?"},
      {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "use the tool", "signature": "sig"},
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
         "input": {"city": "Paris", "days": 2}}]},
      {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1",
         "content": [{"type": "text", "text": "sunny"}]},
        {"type": "text", "text": "Thanks"}]}
    ]})");
  EXPECT_TRUE(text.starts_with(kBos + "You are helpful.\n\n## Tools\n\n")) << text;
  EXPECT_NE(
      text.find("{\"name\": \"get_weather\", \"description\": \"Weather\", \"parameters\": "
                "{\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}}}"),
      std::string::npos);
  EXPECT_NE(text.find("<｜User｜>Weather in Paris?<｜Assistant｜><think>use the tool</think>"
                      "Checking.\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_weather\">\n"
                      "<｜DSML｜parameter name=\"city\" string=\"true\">Paris</｜DSML｜parameter>\n"
                      "<｜DSML｜parameter name=\"days\" string=\"false\">2</｜DSML｜parameter>\n"
                      "</｜DSML｜invoke>\n</｜DSML｜tool_calls>" +
                      kEos +
                      "<｜User｜><tool_result>sunny</tool_result>\n\nThanks<｜Assistant｜><think>"),
            std::string::npos)
      << text;
}

TEST(AnthropicRequest, ThinkingAndRejections) {
  EXPECT_EQ(anthropic(R"({"messages": [{"role": "user", "content": "u"}],
                          "thinking": {"type": "disabled"}})"),
            kBos + "<｜User｜>u<｜Assistant｜></think>");
  ChatRequest max = chat_request_from_anthropic(Json::parse(
      R"({"messages": [{"role": "user", "content": "u"}], "output_config": {"effort": "max"}})"));
  EXPECT_EQ(max.options.effort, ReasoningEffort::kMax);
  EXPECT_THROW(anthropic(R"({"messages": [{"role": "user", "content": [
      {"type": "image", "source": {"type": "base64", "data": ""}}]}]})"),
               ChatError);
  EXPECT_THROW(anthropic(R"({"messages": [{"role": "system", "content": "s"}]})"), ChatError);
  EXPECT_THROW(anthropic(R"({"messages": [{"role": "user", "content": [{"type": 1}]}]})"),
               ChatError);
  EXPECT_EQ(anthropic(R"({"messages": [{"role": "user", "content": "u"}],
                          "thinking": {"type": "disabled"},
                          "tools": [{"name": "f", "input_schema": {}}],
                          "tool_choice": {"type": "none"}})"),
            kBos + "<｜User｜>u<｜Assistant｜></think>");
}

}  // namespace
}  // namespace magnetar::chat
