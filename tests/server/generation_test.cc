// One generation, token by token, on the real V4 tokenizer: reasoning / content / tool-call events
// and their ids, where generation ends (EOS, the end of the tool block, stop strings, max_tokens,
// a malformed completion), what the stop strings see, and greedy sampling of DSML structure.
#include "server/generation.h"

#include <gtest/gtest.h>

#include <regex>

#include "tokenizer/tokenizer_fixture.h"

namespace magnetar::server {
namespace {

const tokenizer::Tokenizer& tok() { return tokenizer::testing::v4_tokenizer(); }

std::vector<int32_t> ids(const std::string& text) { return tok().encode(text, true); }

JobRequest request(chat::ThinkingMode mode, int64_t max_tokens = 1000) {
  JobRequest r;
  r.mode = mode;
  r.max_tokens = max_tokens;
  return r;
}

struct Fed {
  std::vector<Event> events;
  int accepted = 0;    // tokens accept() took before it returned false (or all of them)
  bool ended = false;  // accept() returned false
};

// Feeds `tokens` until accept() returns false.
Fed feed(Generation& g, const std::vector<int32_t>& tokens) {
  Fed run;
  for (int32_t t : tokens) {
    ++run.accepted;
    if (!g.accept(t, run.events)) {
      run.ended = true;
      break;
    }
  }
  return run;
}

// The concatenated text of the events of one kind.
std::string text_of(const std::vector<Event>& events, Event::Kind kind) {
  std::string out;
  for (const Event& e : events) {
    if (e.kind == kind) out += e.text;
  }
  return out;
}

TEST(Generation, ThinkingSplitsReasoningAndContentAndEndsAtEos) {
  JobRequest r = request(chat::ThinkingMode::kThinking);
  kvcache::ToolIdMap memory;
  Generation g(r, tok(), memory);
  std::vector<int32_t> tokens = ids("Let me think.</think>Hello, world!");
  tokens.push_back(tok().eos_id());
  Fed run = feed(g, tokens);
  EXPECT_TRUE(run.ended);
  EXPECT_EQ(run.accepted, static_cast<int>(tokens.size()));
  EXPECT_EQ(text_of(run.events, Event::Kind::kReasoning), "Let me think.");
  EXPECT_EQ(text_of(run.events, Event::Kind::kContent), "Hello, world!");
  const GenerationResult& res = g.result();
  EXPECT_EQ(res.finish, FinishReason::kStop);
  EXPECT_EQ(res.reasoning, "Let me think.");
  EXPECT_EQ(res.content, "Hello, world!");
  EXPECT_EQ(res.usage.completion_tokens, static_cast<int64_t>(tokens.size()) - 1)
      << "EOS is not counted";
  EXPECT_EQ(res.usage.reasoning_tokens, static_cast<int64_t>(ids("Let me think.</think>").size()));
}

TEST(Generation, ToolCallsGetIdsStreamArgumentsAndEndAtTheBlock) {
  JobRequest r = request(chat::ThinkingMode::kChat);
  r.tools_active = true;
  r.tool_id_prefix = "toolu_";
  kvcache::ToolIdMap memory;
  Generation g(r, tok(), memory);
  const std::string block =
      "\n\n<｜DSML｜tool_calls>\n"
      "<｜DSML｜invoke name=\"get_weather\">\n"
      "<｜DSML｜parameter name=\"city\" string=\"true\">Paris & \"Lyon\"</｜DSML｜parameter>\n"
      "<｜DSML｜parameter name=\"days\" string=\"false\">2</｜DSML｜parameter>\n"
      "</｜DSML｜invoke>\n"
      "<｜DSML｜invoke name=\"now\">\n"
      "</｜DSML｜invoke>\n"
      "</｜DSML｜tool_calls>";
  std::vector<int32_t> tokens = ids("Checking." + block + "ignored after the block");
  Fed run = feed(g, tokens);
  ASSERT_TRUE(run.ended);
  EXPECT_EQ(run.accepted, static_cast<int>(ids("Checking." + block).size()))
      << "generation stops at the closing tag";
  const GenerationResult& res = g.result();
  EXPECT_EQ(res.finish, FinishReason::kToolCalls);
  EXPECT_EQ(res.content, "Checking.");
  ASSERT_EQ(res.tool_calls.size(), 2u);
  EXPECT_EQ(res.tool_calls[0].name, "get_weather");
  EXPECT_EQ(res.tool_calls[0].arguments, R"({"city": "Paris & \"Lyon\"", "days": 2})");
  EXPECT_EQ(res.tool_calls[1].arguments, "{}");
  EXPECT_TRUE(std::regex_match(res.tool_calls[0].id, std::regex("toolu_[0-9a-f]{32}")));
  EXPECT_NE(res.tool_calls[0].id, res.tool_calls[1].id);
  EXPECT_EQ(g.sampled_dsml(), block);
  // The name is announced before any argument byte; the fragments rebuild the arguments.
  std::vector<std::string> per_call(2);
  int begins = 0;
  for (const Event& e : run.events) {
    if (e.kind == Event::Kind::kToolCallBegin) {
      EXPECT_EQ(e.id, res.tool_calls[e.index].id);
      EXPECT_EQ(per_call[e.index], "");
      ++begins;
    }
    if (e.kind == Event::Kind::kToolCallArguments) per_call[e.index] += e.text;
  }
  EXPECT_EQ(begins, 2);
  EXPECT_EQ(per_call[0], res.tool_calls[0].arguments);
  EXPECT_EQ(per_call[1], res.tool_calls[1].arguments);
}

TEST(Generation, StopStringsCutVisibleContentOnly) {
  JobRequest r = request(chat::ThinkingMode::kThinking);
  r.stop = {"", "STOP"};
  kvcache::ToolIdMap memory;
  Generation g(r, tok(), memory);
  Fed run = feed(g, ids("a STOP in reasoning</think>answer STOP more text"));
  EXPECT_TRUE(run.ended);
  EXPECT_EQ(g.result().reasoning, "a STOP in reasoning");
  EXPECT_EQ(g.result().content, "answer ");
  EXPECT_EQ(text_of(run.events, Event::Kind::kContent), "answer ");
  EXPECT_EQ(g.result().finish, FinishReason::kStop);
  EXPECT_EQ(g.result().stop_sequence, "STOP");
}

TEST(Generation, MaxTokensEndsWithLengthAndReleasesHeldText) {
  JobRequest r = request(chat::ThinkingMode::kChat, 3);
  kvcache::ToolIdMap memory;
  Generation g(r, tok(), memory);
  std::vector<int32_t> tokens = ids("one two three four five");
  Fed run = feed(g, tokens);
  EXPECT_EQ(run.accepted, 3);
  EXPECT_EQ(g.result().finish, FinishReason::kLength);
  EXPECT_EQ(g.result().usage.completion_tokens, 3);
  EXPECT_EQ(g.result().content,
            tok().decode(std::vector<int32_t>(tokens.begin(), tokens.begin() + 3)));
}

TEST(Generation, RawCompletionsAreNotParsed) {
  JobRequest r = request(chat::ThinkingMode::kChat);
  r.raw = true;
  r.stop = {"\n\n"};
  kvcache::ToolIdMap memory;
  Generation g(r, tok(), memory);
  Fed run = feed(g, ids("x</think><｜DSML｜ y\n\nz"));
  EXPECT_TRUE(run.ended);
  EXPECT_EQ(g.result().text, "x</think><｜DSML｜ y");
  EXPECT_EQ(text_of(run.events, Event::Kind::kContent), g.result().text);
  EXPECT_TRUE(g.result().content.empty());
}

TEST(Generation, AMalformedCompletionEndsItKeepingWhatWasParsed) {
  JobRequest r = request(chat::ThinkingMode::kChat);
  kvcache::ToolIdMap memory;
  Generation g(r, tok(), memory);
  Fed run = feed(g, ids("fine text<think>then garbage"));
  EXPECT_TRUE(run.ended);
  EXPECT_EQ(g.result().content, "fine text");
  EXPECT_EQ(g.result().finish, FinishReason::kStop);
  EXPECT_FALSE(g.parse_error().empty());
}

TEST(Generation, CancellationIsFinal) {
  JobRequest r = request(chat::ThinkingMode::kChat);
  kvcache::ToolIdMap memory;
  Generation g(r, tok(), memory);
  std::vector<Event> events;
  EXPECT_TRUE(g.accept(ids("Hi")[0], events));
  g.stop(FinishReason::kCancelled, "", events);
  EXPECT_TRUE(g.finished());
  EXPECT_EQ(g.result().finish, FinishReason::kCancelled);
  EXPECT_FALSE(g.accept(ids("more")[0], events));
}

TEST(Generation, ForcedTokensThenEos) {
  JobRequest r = request(chat::ThinkingMode::kChat);
  r.forced_tokens = ids("ab");
  kvcache::ToolIdMap memory;
  Generation g(r, tok(), memory);
  std::vector<float> logits(tok().vocab_size(), 0.0f);
  std::vector<int32_t> chosen;
  for (size_t i = 0; i < r.forced_tokens->size() + 1; ++i) chosen.push_back(g.choose(logits));
  std::vector<int32_t> expected = *r.forced_tokens;
  expected.push_back(tok().eos_id());
  EXPECT_EQ(chosen, expected);
}

// Logits whose argmax is `top` while every other token is nearly as likely, so sampling almost
// never picks `top` and greedy always does.
std::vector<float> flat_logits(int32_t top) {
  std::vector<float> l(tok().vocab_size(), 0.9f);
  l[top] = 1.0f;
  return l;
}

TEST(Generation, DsmlStructureIsSampledGreedily) {
  JobRequest r = request(chat::ThinkingMode::kChat);
  r.tools_active = true;
  r.sampling.min_p = 0;
  r.sampling.seed = 42;
  kvcache::ToolIdMap memory;
  Generation g(r, tok(), memory);
  const int32_t top = 1234;
  std::vector<float> logits = flat_logits(top);
  int content_hits = 0;
  for (int i = 0; i < 20; ++i) content_hits += g.choose(logits) == top;
  EXPECT_LT(content_hits, 3) << "content positions sample";
  std::vector<Event> events;
  for (int32_t t : ids("\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f")) g.accept(t, events);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(g.choose(logits), top) << "inside a tag: greedy";
  for (int32_t t : ids("\">\n<｜DSML｜parameter name=\"a\" string=\"true\">x")) g.accept(t, events);
  int payload_hits = 0;
  for (int i = 0; i < 20; ++i) payload_hits += g.choose(logits) == top;
  EXPECT_LT(payload_hits, 3) << "argument payloads sample";
}

TEST(Generation, WithoutToolsDsmlIsNotForced) {
  JobRequest r = request(chat::ThinkingMode::kChat);
  r.sampling.min_p = 0;
  r.sampling.seed = 7;
  kvcache::ToolIdMap memory;
  Generation g(r, tok(), memory);
  std::vector<Event> events;
  for (int32_t t : ids("\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f")) g.accept(t, events);
  std::vector<float> logits = flat_logits(99);
  int hits = 0;
  for (int i = 0; i < 20; ++i) hits += g.choose(logits) == 99;
  EXPECT_LT(hits, 3);
}

}  // namespace
}  // namespace magnetar::server
