// The completion parser (official-encoding.md §3): well-formed completions, the tolerances and
// rejections of §3.4, truncation, streaming under random chunkings, and tool-call round trips
// render → DSML text → parser → JSON.
#include "chat/completion_parser.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "chat/python_json.h"
#include "chat/renderer.h"

namespace magnetar::chat {
namespace {

using Kind = CompletionError::Kind;
constexpr ThinkingMode kThinking = ThinkingMode::kThinking;
constexpr ThinkingMode kChat = ThinkingMode::kChat;

const std::string kEos = "<｜end▁of▁sentence｜>";
const std::string kOpen = "\n\n<｜DSML｜tool_calls>\n";
const std::string kClose = "</｜DSML｜tool_calls>";

std::string invoke(const std::string& name, const std::string& params) {
  return "<｜DSML｜invoke name=\"" + name + "\">\n" + params + "</｜DSML｜invoke>\n";
}
std::string param(const std::string& key, bool is_string, const std::string& value) {
  return "<｜DSML｜parameter name=\"" + key + "\" string=\"" + (is_string ? "true" : "false") +
         "\">" + value + "</｜DSML｜parameter>\n";
}

TEST(CompletionParser, ReasoningAndContent) {
  ParsedCompletion r =
      parse_completion("Simple arithmetic.</think>2 + 2 = 4.<｜end▁of▁sentence｜>", kThinking);
  ASSERT_FALSE(r.error);
  EXPECT_EQ(r.message.reasoning, "Simple arithmetic.");
  EXPECT_EQ(r.message.content, "2 + 2 = 4.");
  EXPECT_TRUE(r.message.tool_calls.empty());
}

TEST(CompletionParser, ChatModeHasNoReasoning) {
  ParsedCompletion r = parse_completion("Hello!" + kEos, kChat);
  ASSERT_FALSE(r.error);
  EXPECT_EQ(r.message.content, "Hello!");
  EXPECT_EQ(r.message.reasoning, "");
}

// The first assistant turn of E5b (§4) as the model would write it.
TEST(CompletionParser, WorkedExampleE5) {
  std::string text =
      "Call the tool twice.</think>" + kOpen +
      invoke("get_weather", param("city", true, "Beijing")) +
      invoke("get_weather", param("city", true, "Shanghai") + param("days", false, "2")) + kClose +
      kEos;
  ParsedCompletion r = parse_completion(text, kThinking);
  ASSERT_FALSE(r.error) << r.error->message;
  EXPECT_EQ(r.message.reasoning, "Call the tool twice.");
  EXPECT_EQ(r.message.content, "");
  ASSERT_EQ(r.message.tool_calls.size(), 2u);
  EXPECT_EQ(r.message.tool_calls[0].name, "get_weather");
  EXPECT_EQ(r.message.tool_calls[0].arguments, "{\"city\": \"Beijing\"}");
  EXPECT_EQ(r.message.tool_calls[1].arguments, "{\"city\": \"Shanghai\", \"days\": 2}");
}

TEST(CompletionParser, ArgumentsAreNotValidatedOrEntityDecoded) {
  std::string text = kOpen +
                     invoke("f", param("a", false, "not json") + param("b", true, "&lt;x&amp;")) +
                     kClose + kEos;
  ParsedCompletion r = parse_completion(text, kChat);
  ASSERT_FALSE(r.error);
  EXPECT_EQ(r.message.tool_calls[0].arguments, "{\"a\": not json, \"b\": \"&lt;x&amp;\"}");
}

struct Case {
  const char* name;
  ThinkingMode mode;
  std::string text;
  std::optional<Kind> error;  // nullopt: accepted
};

std::vector<Case> tolerance_cases() {
  const std::string call = invoke("f", param("k", true, "v"));
  return {
      // Accepted (§3.4).
      {"WhitespaceBeforeName",
       kChat,
       kOpen + "<｜DSML｜invoke \n\tname=\"f\">\n</｜DSML｜invoke>\n" + kClose + kEos,
       {}},
      {"ZeroArgumentsOneNewline",
       kChat,
       kOpen + "<｜DSML｜invoke name=\"f\">\n</｜DSML｜invoke>\n" + kClose + kEos,
       {}},
      {"ZeroArgumentsTwoNewlines",
       kChat,
       kOpen + "<｜DSML｜invoke name=\"f\">\n\n</｜DSML｜invoke>\n" + kClose + kEos,
       {}},
      {"MissingEosAfterBlock", kChat, kOpen + call + kClose, {}},
      {"ContentBeforeBlockKeepsTrailingSpaces",
       kChat,
       "Let me check.  " + kOpen + call + kClose,
       {}},
      {"EmptyContent", kChat, kEos, {}},
      // Rejected (§3.4).
      {"RepeatedThink", kThinking, "<think>r</think>a" + kEos, Kind::kMalformed},
      {"DsmlInsideReasoning", kThinking, "r" + kOpen + call + kClose + "</think>" + kEos,
       Kind::kMalformed},
      {"BlockAfterOneNewline", kChat, "a\n<｜DSML｜tool_calls>\n" + call + kClose + kEos,
       Kind::kMalformed},
      {"BlockWithoutNewline", kChat, "a<｜DSML｜tool_calls>\n" + call + kClose + kEos,
       Kind::kMalformed},
      {"ParameterWithoutString", kChat,
       kOpen +
           "<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter name=\"k\">v</｜DSML｜parameter>\n"
           "</｜DSML｜invoke>\n" +
           kClose + kEos,
       Kind::kMalformed},
      {"ExtraWhitespaceBetweenTags", kChat, kOpen + "\n" + call + kClose + kEos, Kind::kMalformed},
      {"SpaceBeforeInvokeEnd", kChat,
       kOpen + "<｜DSML｜invoke name=\"f\">\n" + param("k", true, "v") + " </｜DSML｜invoke>\n" +
           kClose + kEos,
       Kind::kMalformed},
      {"DuplicateParameter", kChat,
       kOpen + invoke("f", param("k", true, "a") + param("k", true, "b")) + kClose + kEos,
       Kind::kMalformed},
      {"TextAfterBlock", kChat, kOpen + call + kClose + "\nDone." + kEos, Kind::kMalformed},
      {"TextAfterEos", kChat, "a" + kEos + "b", Kind::kMalformed},
      {"EndThinkInChatContent", kChat, "a</think>b" + kEos, Kind::kMalformed},
      {"BosInContent", kThinking, "r</think>a<｜begin▁of▁sentence｜>" + kEos, Kind::kMalformed},
      {"DsmlInContent", kChat, "a ｜DSML｜ b" + kEos, Kind::kMalformed},
      {"ValueEndWithoutAngle", kChat,
       kOpen +
           "<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter name=\"k\" string=\"true\">v"
           "/｜DSML｜parameter>\n</｜DSML｜invoke>\n" +
           kClose + kEos,
       Kind::kMalformed},
      {"InvokeWithoutName", kChat, kOpen + "<｜DSML｜invoke>\n</｜DSML｜invoke>\n" + kClose + kEos,
       Kind::kMalformed},
      // Truncated: the official parser's laxity (§3.4) is reported instead of accepted.
      {"MissingEndThink", kThinking, "reasoning only", Kind::kTruncated},
      {"MissingEos", kChat, "content only", Kind::kTruncated},
      {"EndsAfterBlockStart", kChat, "a\n\n<｜DSML｜tool_calls", Kind::kTruncated},
      {"EndsAfterInvokeHeader", kChat, kOpen + "<｜DSML｜invoke name=\"f\">\n", Kind::kTruncated},
      {"EndsAfterParameter", kChat, kOpen + "<｜DSML｜invoke name=\"f\">\n" + param("k", true, "v"),
       Kind::kTruncated},
      {"EndsInsideValue", kChat,
       kOpen + "<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter name=\"k\" string=\"true\">abc",
       Kind::kTruncated},
  };
}

class Tolerance : public ::testing::TestWithParam<Case> {};

TEST_P(Tolerance, GivesTheSpecifiedResult) {
  const Case& c = GetParam();
  ParsedCompletion r = parse_completion(c.text, c.mode);
  if (!c.error) {
    EXPECT_FALSE(r.error) << r.error->message;
  } else {
    ASSERT_TRUE(r.error);
    EXPECT_EQ(r.error->kind, *c.error) << r.error->message;
  }
}

INSTANTIATE_TEST_SUITE_P(Section3_4, Tolerance, ::testing::ValuesIn(tolerance_cases()),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(CompletionParser, AcceptedFormsGiveTheExpectedCalls) {
  auto cases = tolerance_cases();
  ParsedCompletion ws = parse_completion(cases[0].text, kChat);
  ASSERT_EQ(ws.message.tool_calls.size(), 1u);
  EXPECT_EQ(ws.message.tool_calls[0].name, "f");
  EXPECT_EQ(ws.message.tool_calls[0].arguments, "{}");
  ParsedCompletion spaces = parse_completion(cases[4].text, kChat);
  EXPECT_EQ(spaces.message.content, "Let me check.  ");
  EXPECT_EQ(spaces.message.tool_calls[0].arguments, "{\"k\": \"v\"}");
}

// Truncated blocks keep the calls that were closed before the cut.
TEST(CompletionParser, TruncationKeepsClosedCalls) {
  std::string text = kOpen + invoke("a", param("k", true, "v")) + "<｜DSML｜invoke name=\"b\">\n";
  ParsedCompletion r = parse_completion(text, kChat);
  ASSERT_TRUE(r.error);
  EXPECT_EQ(r.error->kind, Kind::kTruncated);
  ASSERT_EQ(r.message.tool_calls.size(), 1u);
  EXPECT_EQ(r.message.tool_calls[0].name, "a");
}

// Feeds `text` in random pieces; adjacent deltas of one kind are merged so that the event lists
// of different chunkings can be compared.
std::vector<CompletionEvent> stream(const std::string& text, ThinkingMode mode, std::mt19937& rng,
                                    ParsedCompletion& result) {
  CompletionParser parser(mode);
  std::vector<CompletionEvent> events;
  auto take = [&](std::vector<CompletionEvent> more) {
    for (CompletionEvent& e : more) {
      bool delta = e.kind != CompletionEvent::Kind::kToolCallBegin &&
                   e.kind != CompletionEvent::Kind::kToolCallEnd &&
                   e.kind != CompletionEvent::Kind::kError;
      if (delta && !events.empty() && events.back().kind == e.kind &&
          events.back().call_index == e.call_index) {
        events.back().text += e.text;
      } else {
        events.push_back(std::move(e));
      }
    }
  };
  size_t pos = 0;
  while (pos < text.size()) {
    size_t n = std::uniform_int_distribution<size_t>(0, 12)(rng);
    take(parser.feed(std::string_view(text).substr(pos, n)));
    pos += n;
  }
  take(parser.finish());
  result = parser.result();
  return events;
}

TEST(CompletionParser, RandomChunkingsEqualWholeText) {
  std::vector<Case> cases = tolerance_cases();
  cases.push_back({"E5",
                   kThinking,
                   "Call the tool twice.</think>" + kOpen +
                       invoke("get_weather", param("city", true, "Beijing")) +
                       invoke("w", param("city", true, "a\n<b>\"c\"</｜DSML｜invoke>") +
                                       param("days", false, "[1, 2]")) +
                       kClose + kEos,
                   {}});
  cases.push_back({"NearMisses", kThinking,
                   "a</thin</think>b\n\n<｜DSML｜tool_call\n\n<<｜end▁of" + kEos,
                   Kind::kMalformed});
  std::mt19937 rng(1234);
  for (const Case& c : cases) {
    ParsedCompletion whole = parse_completion(c.text, c.mode);
    ParsedCompletion first;
    std::vector<CompletionEvent> first_events = stream(c.text, c.mode, rng, first);
    for (int trial = 0; trial < 200; ++trial) {
      ParsedCompletion r;
      std::vector<CompletionEvent> events = stream(c.text, c.mode, rng, r);
      ASSERT_EQ(r.error, whole.error) << c.name;
      ASSERT_EQ(r.message.reasoning, whole.message.reasoning) << c.name;
      ASSERT_EQ(r.message.content, whole.message.content) << c.name;
      ASSERT_EQ(r.message.tool_calls.size(), whole.message.tool_calls.size()) << c.name;
      for (size_t i = 0; i < r.message.tool_calls.size(); ++i) {
        EXPECT_EQ(r.message.tool_calls[i].name, whole.message.tool_calls[i].name);
        EXPECT_EQ(r.message.tool_calls[i].arguments, whole.message.tool_calls[i].arguments);
      }
      ASSERT_EQ(events, first_events) << c.name;
    }
  }
}

// The streamed argument deltas of each call add up to its final arguments text.
TEST(CompletionParser, ArgumentDeltasAddUpToTheArguments) {
  std::string text = "r</think>" + kOpen +
                     invoke("f", param("a", true, "x\ty") + param("b", false, "{\"k\": [1, 2]}")) +
                     invoke("g", "") + kClose + kEos;
  std::mt19937 rng(7);
  ParsedCompletion r;
  std::vector<CompletionEvent> events = stream(text, kThinking, rng, r);
  ASSERT_FALSE(r.error);
  std::vector<std::string> names, args(2);
  for (const CompletionEvent& e : events) {
    if (e.kind == CompletionEvent::Kind::kToolCallBegin) names.push_back(e.text);
    if (e.kind == CompletionEvent::Kind::kToolCallArguments) args.at(e.call_index) += e.text;
  }
  EXPECT_EQ(names, (std::vector<std::string>{"f", "g"}));
  EXPECT_EQ(args[0], "{\"a\": \"x\\ty\", \"b\": {\"k\": [1, 2]}}");
  EXPECT_EQ(args[0], r.message.tool_calls[0].arguments);
  EXPECT_EQ(args[1], "{}");
}

// The tool name is reported before the arguments have been generated.
TEST(CompletionParser, NameIsReportedEarly) {
  CompletionParser p(kChat);
  auto events = p.feed(kOpen + "<｜DSML｜invoke name=\"search\">\n<｜DSML｜parameter");
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.front().kind, CompletionEvent::Kind::kToolCallBegin);
  EXPECT_EQ(events.front().text, "search");
}

// render → DSML text → parser → JSON is lossless for arguments objects.
TEST(CompletionParser, RoundTripThroughRendering) {
  const std::vector<std::string> arguments = {
      "{}",
      R"({"city": "Beijing"})",
      R"({"path":"a&b<c>","n":1.50,"ok":true,"tags":["x","y"],"meta":{"k":null}})",
      R"({"text": "line1\nline2\t\"quoted\" \\ back", "unicode": "温泉 😀 é", "ctl": "\u0001"})",
      R"({"big": 12345678901234567890, "neg": -7, "f": 1e-7, "g": 1e22, "z": -0.0, "e": ""})",
      R"({"dsml_like": "</｜DSML｜invoke>\n<｜DSML｜tool_calls>", "nested": [[{"a": [true, null]}]]})",
      R"({"dup": 1, "x": 2, "dup": 3})",
  };
  std::vector<ToolCall> calls;
  for (size_t i = 0; i < arguments.size(); ++i) {
    calls.push_back({"call_" + std::to_string(i), "tool_" + std::to_string(i), arguments[i]});
  }
  Message user;
  user.content = "go";
  Message assistant;
  assistant.role = Role::kAssistant;
  assistant.reasoning = "thinking about it";
  assistant.content = "Calling.";
  assistant.tool_calls = calls;
  RenderOptions options;
  options.drop_thinking = false;
  std::string prompt = render_text({user, assistant}, options);
  const std::string marker = "<｜Assistant｜><think>";
  std::string completion = prompt.substr(prompt.find(marker) + marker.size());
  ParsedCompletion r = parse_completion(completion, kThinking);
  ASSERT_FALSE(r.error) << r.error->message;
  EXPECT_EQ(r.message.reasoning, assistant.reasoning);
  EXPECT_EQ(r.message.content, assistant.content);
  ASSERT_EQ(r.message.tool_calls.size(), calls.size());
  for (size_t i = 0; i < calls.size(); ++i) {
    EXPECT_EQ(r.message.tool_calls[i].name, calls[i].name);
    std::string got = r.message.tool_calls[i].arguments.get<std::string>();
    auto original = parse_python_json(arguments[i]);
    auto parsed = parse_python_json(got);
    ASSERT_TRUE(parsed) << got;
    EXPECT_EQ(*parsed, *original) << got;
    EXPECT_EQ(got, dump_python_json(*original));
  }
  // The parsed message renders back to the same prompt.
  Message again = r.message;
  std::string prompt2 = render_text({user, again}, options);
  EXPECT_EQ(prompt2, prompt);
}

}  // namespace
}  // namespace magnetar::chat
