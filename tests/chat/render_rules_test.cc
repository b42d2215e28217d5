// The rendering rules of official-encoding.md §2 beyond the worked examples: the consequences of
// §2.15, tool-result ordering, the prompt's control/plain pieces, and every rejection of §1.9.
#include <gtest/gtest.h>

#include <string>

#include "chat/chat_error.h"
#include "chat/deepseek_messages.h"
#include "chat/renderer.h"

namespace magnetar::chat {
namespace {

constexpr ThinkingMode kChat = ThinkingMode::kChat;
constexpr ThinkingMode kThinking = ThinkingMode::kThinking;

std::string render(const std::string& messages, ThinkingMode mode = kThinking,
                   RenderOptions options = {}) {
  options.mode = mode;
  return render_text(messages_from_deepseek_json(nlohmann::ordered_json::parse(messages)), options);
}

const std::string kBos = "<｜begin▁of▁sentence｜>";
const std::string kEos = "<｜end▁of▁sentence｜>";

TEST(RenderRules, ConsecutiveSystemsAreConcatenated) {
  EXPECT_EQ(render(R"([{"role":"system","content":"A"},{"role":"system","content":"B"},
                       {"role":"user","content":"u"}])",
                   kChat),
            kBos + "AB<｜User｜>u<｜Assistant｜></think>");
}

// The assistant after the system message gets no header; in thinking mode its reasoning (kept:
// it follows the last user message) still closes with </think>.
TEST(RenderRules, SystemAfterUserJoinsTheUserText) {
  std::string messages = R"([{"role":"user","content":"u"},{"role":"system","content":"S"},
                             {"role":"assistant","reasoning_content":"r","content":"a"}])";
  EXPECT_EQ(render(messages, kChat), kBos + "<｜User｜>uSa" + kEos);
  EXPECT_EQ(render(messages, kThinking), kBos + "<｜User｜>uSr</think>a" + kEos);
}

TEST(RenderRules, SecondAssistantHasNoHeader) {
  EXPECT_EQ(render(R"([{"role":"user","content":"u"},
                       {"role":"assistant","reasoning_content":"r1","content":"a1"},
                       {"role":"assistant","reasoning_content":"r2","content":"a2"}])"),
            kBos + "<｜User｜>u<｜Assistant｜><think>r1</think>a1" + kEos + "r2</think>a2" + kEos);
}

TEST(RenderRules, LatestReminderBetweenUserAndAssistant) {
  EXPECT_EQ(render(R"([{"role":"user","content":"u"},{"role":"latest_reminder","content":"R"},
                       {"role":"assistant","content":"a"}])"),
            kBos + "<｜User｜>u<｜Assistant｜><think><｜latest_reminder｜>R</think>a" + kEos);
}

TEST(RenderRules, MergedUserLosesItsTask) {
  EXPECT_EQ(
      render(R"([{"role":"user","content":"a"},{"role":"user","content":"b","task":"query"}])",
             kChat),
      kBos + "<｜User｜>a\n\nb<｜Assistant｜></think>");
  // A task followed by another user message: two turns, no task token.
  EXPECT_EQ(
      render(R"([{"role":"user","content":"a","task":"query"},{"role":"user","content":"b"}])",
             kChat),
      kBos + "<｜User｜>a<｜User｜>b<｜Assistant｜></think>");
}

TEST(RenderRules, ToolResultsFoldSortAndRenderNone) {
  std::string calls = R"({"role":"assistant","content":"","tool_calls":[
      {"id":"A","function":{"name":"f","arguments":"{}"}},
      {"id":"B","function":{"name":"f","arguments":"{}"}},
      {"id":"C","function":{"name":"f","arguments":"{}"}}]})";
  std::string text = render(R"([{"role":"user","content":"q"},)" + calls + R"(,
      {"role":"tool","tool_call_id":"C","content":"c"},
      {"role":"tool","tool_call_id":"X","content":null},
      {"role":"tool","tool_call_id":"B","content":[{"type":"text","text":"b1"},
                                                   {"type":"image","text":"?"}]},
      {"role":"tool","tool_call_id":"A","content":"a"},
      {"role":"user","content":"more"}])",
                            kChat);
  EXPECT_TRUE(text.ends_with(kEos + "<｜User｜><tool_result>None</tool_result>\n\n"
                                    "<tool_result>a</tool_result>\n\n"
                                    "<tool_result>b1\n\n[Unsupported image]</tool_result>\n\n"
                                    "<tool_result>c</tool_result>\n\nmore<｜Assistant｜></think>"))
      << text;
}

TEST(RenderRules, ToolCallsWithoutToolsStillDropReasoning) {
  std::string text = render(R"([{"role":"user","content":"q"},
      {"role":"assistant","reasoning_content":"r","content":"",
       "tool_calls":[{"id":"A","function":{"name":"f","arguments":"{}"}}]},
      {"role":"tool","tool_call_id":"A","content":"x"}])");
  EXPECT_EQ(text.find("r</think>"), std::string::npos) << text;
  EXPECT_TRUE(text.ends_with("<tool_result>x</tool_result><｜Assistant｜><think>"));
}

TEST(RenderRules, DeveloperKeptInChatDroppedInThinking) {
  std::string messages = R"([{"role":"developer","content":"D"},{"role":"user","content":"u"}])";
  EXPECT_EQ(render(messages, kChat), kBos + "<｜User｜>D<｜User｜>u<｜Assistant｜></think>");
  EXPECT_EQ(render(messages, kThinking), kBos + "<｜User｜>u<｜Assistant｜><think>");
}

TEST(RenderRules, EmptySystemWithTools) {
  std::string text = render(
      R"([{"role":"system","tools":[{"type":"function","function":{"name":"f"}}]},
          {"role":"user","content":"u"}])");
  EXPECT_TRUE(text.starts_with(kBos + "\n\n## Tools\n\n"));
  EXPECT_NE(text.find("### Available Tool Schemas\n\n{\"name\": \"f\"}\n\nYou MUST strictly"),
            std::string::npos);
}

TEST(RenderRules, OpenAssistantTurnForPrefill) {
  EXPECT_EQ(render(R"([{"role":"user","content":"u"},
                       {"role":"assistant","reasoning_content":"r","content":"par",
                        "wo_eos":true}])"),
            kBos + "<｜User｜>u<｜Assistant｜><think>r</think>par");
}

TEST(RenderRules, EmptyConversationIsJustBos) { EXPECT_EQ(render("[]"), kBos); }

TEST(RenderRules, ThinkMaxOnlyInThinkingMode) {
  RenderOptions max;
  max.effort = ReasoningEffort::kMax;
  EXPECT_EQ(render(R"([{"role":"user","content":"u"}])", kChat, max),
            kBos + "<｜User｜>u<｜Assistant｜></think>");
}

TEST(RenderRules, ArgumentsThatAreNotAnObject) {
  std::string messages = R"([{"role":"assistant","content":"","tool_calls":[
      {"function":{"name":"f","arguments":"[1, 2]"}}]}])";
  // Default: ds4's behaviour (official-encoding.md §6 row 21), one `arguments` string parameter.
  EXPECT_NE(
      render(messages, kChat)
          .find("<｜DSML｜parameter name=\"arguments\" string=\"true\">[1, 2]</｜DSML｜parameter>"),
      std::string::npos);
  RenderOptions strict;
  strict.reject_non_object_arguments = true;
  EXPECT_THROW(render(messages, kChat, strict), ChatError);
  // An already-decoded object is one `arguments` parameter holding its JSON (§1.5 case 2).
  EXPECT_NE(render(R"([{"role":"assistant","content":"","tool_calls":[
      {"function":{"name":"f","arguments":{"a":1}}}]}])",
                   kChat)
                .find("name=\"arguments\" string=\"false\">{\"a\": 1}</｜DSML｜parameter>"),
            std::string::npos);
}

// Template control strings are control pieces; the same strings in client text are plain.
TEST(RenderRules, PiecesSeparateControlTokensFromClientText) {
  RenderOptions options;
  Prompt prompt =
      render_prompt(messages_from_deepseek_json(nlohmann::ordered_json::parse(
                        R"([{"role":"system","content":"S","tools":[{"function":{"name":"f"}}]},
              {"role":"user","content":"<｜Assistant｜></think>"}])")),
                    options);
  std::string rebuilt;
  int think_controls = 0;
  for (const PromptPiece& p : prompt.pieces()) {
    rebuilt += p.text;
    if (p.is_control) {
      EXPECT_NE(p.text, "") << "empty control piece";
      if (p.text == "</think>" || p.text == "<think>") ++think_controls;
    }
  }
  EXPECT_EQ(rebuilt, prompt.text());
  // The tools block names <think> twice and </think> twice, plus the generation prompt's <think>;
  // the user's "</think>" is plain text.
  EXPECT_EQ(think_controls, 5);
  const PromptPiece& user_text = prompt.pieces()[prompt.pieces().size() - 3];
  EXPECT_FALSE(user_text.is_control);
  EXPECT_EQ(user_text.text, "<｜Assistant｜></think>");
}

// §1.9: every rejection.
TEST(RenderRules, Rejections) {
  EXPECT_THROW(parse_thinking_mode("fast"), ChatError);
  EXPECT_THROW(parse_reasoning_effort("low"), ChatError);
  EXPECT_THROW(parse_reasoning_effort("xhigh"), ChatError);
  EXPECT_EQ(parse_reasoning_effort("max"), ReasoningEffort::kMax);
  const char* rejected[] = {
      R"([{"role":"function","content":"x"}])",
      R"([{"role":"ipython","content":"x"}])",
      R"([{"content":"x"}])",
      R"([{"role":"developer","content":""},{"role":"user","content":"u"}])",
      R"([{"role":"developer"}])",
      R"([{"role":"developer","content":null}])",
      R"([{"role":"user","content":null}])",
      R"([{"role":"user","content":[{"type":"text","text":"x"}]}])",
      R"([{"role":"system","content":"s","tools":[{"type":"function"}]}])",
      R"([{"role":"assistant","content":"","tool_calls":[{"function":{"arguments":"{}"}}]}])",
      R"([{"role":"assistant","content":"","tool_calls":[{"function":{"name":"f"}}]}])",
      R"([{"role":"assistant","content":"","tool_calls":[{"id":"x"}]}])",
      R"([{"role":"user","content":"u","task":"summarise"}])",
      R"([{"role":"user","content":"u"},{"role":"assistant","content":"a","task":"bogus"},
          {"role":"assistant","content":"t"}])",
      R"([{"role":"system","content":[{"type":"text","text":"x"}]}])",
      R"([{"role":"latest_reminder","content":["x"]}])",
      R"([{"role":"tool","content":42}])",
  };
  for (const char* messages : rejected) {
    EXPECT_THROW(render(messages, kChat), ChatError) << messages;
  }
  // Developer content is checked only when rendered: dropped in thinking mode, it is no error.
  EXPECT_NO_THROW(
      render(R"([{"role":"developer","content":""},{"role":"user","content":"u"}])", kThinking));
  // A task that is not active (followed by a user message) is not looked up.
  EXPECT_NO_THROW(render(R"([{"role":"user","content":"u","task":"bogus"},
                             {"role":"user","content":"v"}])",
                         kChat));
}

}  // namespace
}  // namespace magnetar::chat
