// Request parsing of the four generating APIs: defaults, model names and thinking controls,
// limits, and a 4xx naming the field for every request the server cannot serve exactly.
#include <gtest/gtest.h>

#include "engine/prompt_tokens.h"
#include "server/anthropic_api.h"
#include "server/openai_api.h"
#include "server/responses_api.h"
#include "tokenizer/tokenizer_fixture.h"

namespace magnetar::server {
namespace {

const tokenizer::Tokenizer& tok() { return tokenizer::testing::v4_tokenizer(); }

ApiContext api(int64_t context = 4096) {
  ApiContext c;
  c.tokenizer = &tok();
  c.context = context;
  c.default_max_tokens = 100;
  c.max_tokens_limit = 1000;
  c.models.id = "deepseek-v4-flash";
  c.models.aliases = {"claude-test"};
  return c;
}

template <typename Fn>
ApiError error_of(Fn fn) {
  try {
    fn();
  } catch (const ApiError& e) {
    return e;
  }
  ADD_FAILURE() << "no ApiError thrown";
  return ApiError(0, "");
}

Json chat_body(const char* extra = "") {
  return Json::parse(std::string(R"({"messages": [{"role": "user", "content": "Hi"}])") + extra +
                     "}");
}

TEST(ChatRequests, DefaultsAndTheRenderedPrompt) {
  Prepared p = prepare_chat_completion(chat_body(), api());
  EXPECT_EQ(p.job.prompt_text, "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜><think>")
      << "thinking is on by default";
  EXPECT_EQ(p.job.prompt_tokens, engine::prompt_tokens(tok(), p.job.prompt));
  EXPECT_EQ(p.job.prompt_tokens.size(), 5u);
  EXPECT_EQ(p.job.max_tokens, 100);
  EXPECT_EQ(p.job.sampling.temperature, 1.0f);
  EXPECT_EQ(p.job.sampling.top_p, 1.0f);
  EXPECT_FLOAT_EQ(p.job.sampling.min_p, 0.05f);
  EXPECT_EQ(p.job.sampling.top_k, 0);
  EXPECT_FALSE(p.job.sampling.seed);
  EXPECT_FALSE(p.stream);
  EXPECT_FALSE(p.job.tools_active);
  EXPECT_EQ(p.job.tool_id_prefix, "call_");
}

TEST(ChatRequests, FieldsAreRead) {
  Prepared p = prepare_chat_completion(
      chat_body(R"(, "max_tokens": 5000, "temperature": 0, "top_p": 0.5, "top_k": 7,
                   "min_p": 0.1, "seed": 9, "stop": ["x", "yy"], "stream": true)"),
      api());
  EXPECT_EQ(p.job.max_tokens, 1000) << "lowered to the server's limit";
  EXPECT_EQ(p.job.sampling.temperature, 0.0f);
  EXPECT_EQ(p.job.sampling.top_p, 0.5f);
  EXPECT_EQ(p.job.sampling.top_k, 7);
  EXPECT_FLOAT_EQ(p.job.sampling.min_p, 0.1f);
  EXPECT_EQ(p.job.sampling.seed, 9u);
  EXPECT_EQ(p.job.stop, (std::vector<std::string>{"x", "yy"}));
  EXPECT_TRUE(p.stream);
  EXPECT_EQ(
      prepare_chat_completion(chat_body(R"(, "max_completion_tokens": 7)"), api()).job.max_tokens,
      7);
}

TEST(ChatRequests, ModelNamesAndThinkingControls) {
  auto prompt_of = [](const char* extra) {
    return prepare_chat_completion(chat_body(extra), api()).job.prompt_text;
  };
  EXPECT_TRUE(prompt_of(R"(, "model": "deepseek-chat")").ends_with("</think>"));
  EXPECT_TRUE(prompt_of(R"(, "model": "deepseek-reasoner")").ends_with("<think>"));
  EXPECT_TRUE(prompt_of(R"(, "model": "deepseek-chat", "thinking": {"type": "enabled"})")
                  .ends_with("<think>"))
      << "an explicit choice beats the model's default";
  EXPECT_TRUE(
      prompt_of(R"(, "model": "deepseek-chat", "reasoning_effort": "high")").ends_with("</think>"))
      << "reasoning_effort is not an explicit thinking choice (server-api.md §6)";
  EXPECT_TRUE(prompt_of(R"(, "think": false)").ends_with("</think>"));
  EXPECT_TRUE(prompt_of(R"(, "reasoning_effort": "none")").ends_with("</think>"));
  EXPECT_TRUE(prompt_of(R"(, "model": "claude-test")").ends_with("<think>"));
  // Think-Max needs a context of 393216 tokens; below it, high is used (no prefix).
  EXPECT_EQ(prompt_of(R"(, "reasoning_effort": "max")").find("Reasoning Effort"),
            std::string::npos);
  ApiContext large = api(393216);
  EXPECT_NE(prepare_chat_completion(chat_body(R"(, "reasoning_effort": "max")"), large)
                .job.prompt_text.find("Reasoning Effort: Absolute maximum"),
            std::string::npos);
}

TEST(ChatRequests, ToolsMakeTheRequestToolActiveUnlessChoiceIsNone) {
  const char* tools = R"(, "tools": [{"type": "function", "function": {"name": "f",
                         "parameters": {"type": "object"}}}])";
  EXPECT_TRUE(prepare_chat_completion(chat_body(tools), api()).job.tools_active);
  std::string none = std::string(tools) + R"(, "tool_choice": "none")";
  EXPECT_FALSE(prepare_chat_completion(chat_body(none.c_str()), api()).job.tools_active);
}

TEST(ChatRequests, BadRequestsName) {
  struct Case {
    const char* body;
    int status;
    const char* param;
  };
  const Case cases[] = {
      {R"({})", 400, "messages"},
      {R"({"messages": 3})", 400, "messages"},
      {R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})", 400, "messages"},
      {R"({"messages": [], "temperature": "hot"})", 400, "temperature"},
      {R"({"messages": [], "temperature": 3})", 400, "temperature"},
      {R"({"messages": [], "max_tokens": -1})", 400, "max_tokens"},
      {R"({"messages": [], "n": 2})", 400, "n"},
      {R"({"messages": [], "logprobs": true})", 400, "logprobs"},
      {R"({"messages": [], "frequency_penalty": 0.5})", 400, "frequency_penalty"},
      {R"({"messages": [], "tool_choice": "required"})", 400, "tool_choice"},
      {R"({"messages": [], "tool_choice": {"type": "function"}})", 400, "tool_choice"},
      {R"({"messages": [], "stream": "yes"})", 400, "stream"},
      {R"({"messages": [], "stream_options": 1})", 400, "stream_options"},
      {R"({"messages": [], "reasoning_effort": "extreme"})", 400, "messages"},
      {R"({"messages": [], "model": "gpt-4o"})", 404, "model"},
      {R"({"messages": [], "model": 4})", 400, "model"},
  };
  for (const Case& c : cases) {
    ApiError e = error_of([&] { prepare_chat_completion(Json::parse(c.body), api()); });
    EXPECT_EQ(e.status(), c.status) << c.body;
    EXPECT_EQ(e.param(), c.param) << c.body;
  }
  EXPECT_EQ(error_of([] {
              prepare_chat_completion(Json::parse(R"({"messages": [],
               "model": "gpt-4o"})"),
                                      api());
            }).code(),
            "model_not_found");
}

TEST(ChatRequests, ContextOverflowReportsTheCounts) {
  Json body = {{"messages", {{{"role", "user"}, {"content", std::string(200, 'a') + " b c"}}}}};
  const int64_t tokens =
      static_cast<int64_t>(prepare_chat_completion(body, api()).job.prompt_tokens.size());
  ApiError e = error_of([&] { prepare_chat_completion(body, api(tokens)); });
  EXPECT_EQ(e.status(), 400);
  EXPECT_EQ(e.code(), "context_length_exceeded");
  EXPECT_EQ(e.extra()["n_prompt_tokens"], tokens);
  EXPECT_EQ(e.extra()["n_ctx"], tokens);
  EXPECT_NO_THROW(prepare_chat_completion(body, api(tokens + 1)));
}

TEST(CompletionRequests, PromptForms) {
  Prepared p = prepare_completion({{"prompt", "Once upon"}}, api());
  std::vector<int32_t> expected = {tok().bos_id()};
  std::vector<int32_t> text = tok().encode("Once upon", false);
  expected.insert(expected.end(), text.begin(), text.end());
  EXPECT_EQ(p.job.prompt_tokens, expected);
  EXPECT_TRUE(p.job.raw);
  Prepared with_bos = prepare_completion(
      {{"prompt", {"<｜begin▁of▁sentence｜><｜User｜>hi<｜Assistant｜></think>"}}}, api());
  EXPECT_EQ(with_bos.job.prompt_tokens.front(), tok().bos_id());
  EXPECT_EQ(std::count(with_bos.job.prompt_tokens.begin(), with_bos.job.prompt_tokens.end(),
                       tok().bos_id()),
            1);
  EXPECT_EQ(with_bos.job.prompt_tokens.size(), 5u) << "the template's control strings are tokens";
  Prepared ids = prepare_completion({{"prompt", {1, 2, 3}}}, api());
  EXPECT_EQ(ids.job.prompt_tokens, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(error_of([] { prepare_completion({{"prompt", {1, -2}}}, api()); }).param(), "prompt");
  EXPECT_EQ(error_of([] {
              prepare_completion({{"prompt", {"a", "b"}}}, api());
            }).param(),
            "prompt");
  EXPECT_EQ(error_of([] { prepare_completion(Json::object(), api()); }).param(), "prompt");
  EXPECT_EQ(error_of([] {
              prepare_completion({{"prompt", "x"}, {"echo", true}}, api());
            }).param(),
            "echo");
}

TEST(AnthropicRequests, FieldsAndCounting) {
  Json body = Json::parse(R"({"model": "claude-test", "max_tokens": 50, "system": "Be brief.",
      "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
      "stop_sequences": ["END"], "top_k": 3, "thinking": {"type": "disabled"}})");
  Prepared p = prepare_message(body, api());
  EXPECT_EQ(p.job.prompt_text,
            "<｜begin▁of▁sentence｜>Be brief.<｜User｜>Hi<｜Assistant｜></think>");
  EXPECT_EQ(p.job.max_tokens, 50);
  EXPECT_EQ(p.job.stop, std::vector<std::string>{"END"});
  EXPECT_EQ(p.job.sampling.top_k, 3);
  EXPECT_EQ(p.job.tool_id_prefix, "toolu_");
  EXPECT_EQ(Json::parse(count_message_tokens(body, api()))["input_tokens"],
            p.job.prompt_tokens.size());
  EXPECT_EQ(Json::parse(count_message_tokens(body, api(3)))["input_tokens"],
            p.job.prompt_tokens.size())
      << "counting does not need the prompt to fit";
  Json any = body;
  any["tool_choice"] = {{"type", "any"}};
  EXPECT_EQ(error_of([&] { prepare_message(any, api()); }).param(), "tool_choice");
  Json bad_role = Json::parse(R"({"messages": [{"role": "system", "content": "x"}]})");
  EXPECT_EQ(error_of([&] { prepare_message(bad_role, api()); }).status(), 400);
}

TEST(ResponsesRequests, InputItemsBecomeAConversation) {
  Json request = Json::parse(R"({"instructions": "Be brief.", "input": [
      {"role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
      {"type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": "hmm"}]},
      {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{\"a\": 1}"},
      {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
      {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Sunny."}]}],
      "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
      "reasoning": {"effort": "high"}})");
  Json chat = responses_to_chat(request);
  Json expected = Json::parse(R"({"messages": [
      {"role": "system", "content": "Be brief."},
      {"role": "user", "content": "weather?"},
      {"role": "assistant", "content": "", "reasoning_content": "hmm", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}}]},
      {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
      {"role": "assistant", "content": "Sunny."}],
      "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
      "reasoning_effort": "high"})");
  EXPECT_EQ(chat, expected);
  Prepared p = prepare_response({{"input", "Hi"}, {"max_output_tokens", 9}}, api());
  EXPECT_EQ(p.job.prompt_text, "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜><think>");
  EXPECT_EQ(p.job.max_tokens, 9);
}

TEST(ResponsesRequests, UnsupportedInputsAreRefused) {
  const std::pair<const char*, const char*> cases[] = {
      {R"({})", "input"},
      {R"({"input": 5})", "input"},
      {R"({"input": "x", "previous_response_id": "resp_1"})", "previous_response_id"},
      {R"({"input": "x", "conversation": "c"})", "conversation"},
      {R"({"input": [{"type": "web_search_call"}]})", "input"},
      {R"({"input": [{"role": "user", "content": [{"type": "input_image"}]}]})", "input"},
      {R"({"input": "x", "tools": [{"type": "web_search"}]})", "tools"},
      {R"({"input": "x", "tool_choice": "required"})", "tool_choice"},
      {R"({"input": [{"type": "function_call", "name": "f"}]})", "input"},
  };
  for (const auto& [body, param] : cases) {
    ApiError e = error_of([&] { prepare_response(Json::parse(body), api()); });
    EXPECT_EQ(e.status(), 400) << body;
    EXPECT_EQ(e.param(), param) << body;
  }
}

}  // namespace
}  // namespace magnetar::server
