// Conversation: turns continue the live session (no re-prefill), the transcript is exactly the
// official encoding of the conversation, cancellation undoes or keeps a turn as documented, and
// saved conversations resume without prefill or are refused when damaged.
#include "engine/conversation.h"

#include <gtest/gtest.h>

#include "chat/renderer.h"
#include "tiny_model.h"

namespace magnetar::engine {
namespace {

class ConversationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    EngineOptions o;
    o.model = testing::tiny_model("f32", 5, /*with_mtp=*/false);
    o.prefill_chunk = 8;
    o.context = 4096;
    engine_ = new Engine(o);
  }
  static void TearDownTestSuite() { delete engine_; }

  static TurnOptions greedy(int64_t max_tokens) {
    TurnOptions o;
    o.sampling.temperature = 0;
    o.max_tokens = max_tokens;
    return o;
  }

  static std::string text_of(const std::vector<int32_t>& ids) {
    return engine_->tokenizer().decode(ids);
  }

  // The official encoding of the conversation plus one more user message, history kept whole.
  static std::string rendered_with(std::vector<chat::Message> messages, const std::string& user,
                                   chat::RenderOptions options) {
    chat::Message m;
    m.role = chat::Role::kUser;
    m.content = user;
    messages.push_back(m);
    options.drop_thinking = false;
    return chat::render_text(messages, options);
  }

  static Engine* engine_;
};
Engine* ConversationTest::engine_ = nullptr;

TEST_F(ConversationTest, TurnsContinueTheSessionAndTheTranscriptIsTheOfficialEncoding) {
  Conversation c(*engine_, "You are terse.");
  std::string shown;
  TurnCallbacks callbacks;
  callbacks.text = [&](std::string_view text, bool) { shown += text; };
  TurnStats first = c.reply("hello", greedy(10), callbacks);
  EXPECT_EQ(first.cached_tokens, 0);
  EXPECT_EQ(first.generated_tokens, 10);
  EXPECT_EQ(first.finish, FinishReason::kLength);
  ASSERT_EQ(c.messages().size(), 3u);  // system, user, assistant
  const chat::Message& answer = c.messages()[2];
  EXPECT_EQ(shown, answer.reasoning + answer.content);
  // An answer cut by max_tokens is closed with EOS, as a finished one would be.
  EXPECT_EQ(c.transcript().back(), *engine_->tokenizer().token_id("<｜end▁of▁sentence｜>"));

  const int64_t before = c.tokens_used();
  TurnStats second = c.reply("and more", greedy(6), {});
  // Only the new turn is prefilled: everything before it (but the last answer token and the
  // closing `</think>` and EOS, not processed yet) was reused.
  EXPECT_EQ(second.cached_tokens, before - 3);
  EXPECT_EQ(second.cached_tokens + second.prefill_tokens + second.generated_tokens,
            c.tokens_used() - 2);  // the closing `</think>` and EOS are not processed yet

  // The transcript up to the second answer is the official encoding of the messages, history
  // kept whole (the unfinished first answer closed with `</think>` and EOS, as rendered).
  std::vector<int32_t> upto(c.transcript().begin(),
                            c.transcript().begin() + second.cached_tokens + second.prefill_tokens);
  std::vector<chat::Message> first_turn(c.messages().begin(), c.messages().begin() + 3);
  EXPECT_EQ(text_of(upto), rendered_with(first_turn, "and more", chat::RenderOptions{}));
}

TEST_F(ConversationTest, ThinkingOffAndThinkMaxRenderAsTheEncoderSays) {
  Conversation c(*engine_, "");
  c.set_thinking(chat::ThinkingMode::kChat, chat::ReasoningEffort::kHigh);
  TurnStats t = c.reply("hi", greedy(4), {});
  EXPECT_TRUE(c.messages()[1].reasoning.empty()) << "no reasoning without thinking";
  std::vector<int32_t> prompt(c.transcript().begin(), c.transcript().begin() + t.prefill_tokens);
  chat::RenderOptions chat_mode;
  chat_mode.mode = chat::ThinkingMode::kChat;
  chat::Message hi;
  hi.content = "hi";
  EXPECT_EQ(text_of(prompt), chat::render_text({hi}, chat_mode));

  // Think-Max's instructions precede everything: switching it on rebuilds the transcript.
  c.set_thinking(chat::ThinkingMode::kThinking, chat::ReasoningEffort::kMax);
  TurnStats max = c.reply("think hard", greedy(3), {});
  EXPECT_EQ(max.cached_tokens, 0) << "the start of the prompt changed";
  const std::string text = text_of(c.transcript());
  EXPECT_NE(text.find("Reasoning Effort: Absolute maximum"), std::string::npos);
  // Staying in Think-Max continues the session again, without a second copy of the prefix.
  TurnStats next = c.reply("again", greedy(3), {});
  EXPECT_GT(next.cached_tokens, 0);
  const std::string after = text_of(c.transcript());
  EXPECT_EQ(after.find("Reasoning Effort"), after.rfind("Reasoning Effort"));
}

TEST_F(ConversationTest, CancelledPrefillIsUndoneAndCancelledGenerationIsKept) {
  Conversation c(*engine_, "");
  c.reply("first", greedy(5), {});
  const std::vector<int32_t> before = c.transcript();
  const size_t messages = c.messages().size();

  std::atomic<bool> cancel{false};
  TurnCallbacks stop_in_prefill;
  stop_in_prefill.progress = [&](int64_t, int64_t) { cancel = true; };
  TurnStats undone =
      c.reply(std::string(200, 'x') + " a long message", greedy(5), stop_in_prefill, &cancel);
  EXPECT_TRUE(undone.undone);
  EXPECT_EQ(undone.finish, FinishReason::kCancelled);
  EXPECT_EQ(c.transcript(), before);
  EXPECT_EQ(c.messages().size(), messages);

  // The next turn behaves exactly as if the cancelled one never happened.
  Conversation twin(*engine_, "");
  twin.reply("first", greedy(5), {});
  c.reply("second", greedy(5), {});
  twin.reply("second", greedy(5), {});
  EXPECT_EQ(c.transcript(), twin.transcript());

  cancel = false;
  int pieces = 0;
  TurnCallbacks stop_after_three;
  stop_after_three.text = [&](std::string_view, bool) {
    if (++pieces == 3) cancel = true;
  };
  TurnStats kept = c.reply("third", greedy(50), stop_after_three, &cancel);
  EXPECT_FALSE(kept.undone);
  EXPECT_EQ(kept.finish, FinishReason::kCancelled);
  EXPECT_GE(kept.generated_tokens, 3);
  EXPECT_LT(kept.generated_tokens, 50);
  EXPECT_EQ(c.messages().size(), messages + 4);
}

TEST_F(ConversationTest, ContextOverflowChangesNothing) {
  EngineOptions o;
  o.model = testing::tiny_model("f32", 5, false);
  o.context = 40;
  Engine small(o);
  Conversation c(small, "");
  TurnStats t = c.reply("hi", greedy(100), {});
  EXPECT_EQ(t.finish, FinishReason::kContext);
  EXPECT_EQ(c.tokens_used(), 40);
  const std::vector<int32_t> before = c.transcript();
  EXPECT_THROW(c.reply("more", greedy(5), {}), ContextOverflow);
  EXPECT_EQ(c.transcript(), before);
}

TEST_F(ConversationTest, SavedConversationsResumeWithoutPrefillAndBadFilesAreRefused) {
  Conversation c(*engine_, "sys");
  c.reply("one", greedy(6), {});
  const std::vector<uint8_t> saved = c.save();
  TurnStats live = c.reply("two", greedy(6), {});

  Conversation resumed(*engine_, "other system");
  resumed.load(saved);
  EXPECT_EQ(resumed.messages().size(), 3u);
  EXPECT_EQ(resumed.messages()[0].content, "sys");
  TurnStats after_load = resumed.reply("two", greedy(6), {});
  EXPECT_EQ(after_load.cached_tokens, live.cached_tokens) << "no prefill beyond the new turn";
  EXPECT_EQ(resumed.transcript(), c.transcript());
  EXPECT_EQ(resumed.messages().back().reasoning, c.messages().back().reasoning);

  Conversation target(*engine_, "");
  target.reply("keep me", greedy(2), {});
  const std::vector<int32_t> kept = target.transcript();
  std::vector<uint8_t> damaged = saved;
  damaged[damaged.size() / 3] ^= 1;
  EXPECT_THROW(target.load(damaged), SessionError);
  EXPECT_THROW(target.load(std::span(saved).first(saved.size() - 7)), SessionError);
  EXPECT_THROW(target.load(std::vector<uint8_t>(100, 'x')), SessionError);
  EXPECT_EQ(target.transcript(), kept) << "a refused file changes nothing";

  EngineOptions o;
  o.model = testing::tiny_model("f32", 6, false);  // another model
  Engine foreign(o);
  Conversation elsewhere(foreign, "");
  try {
    elsewhere.load(saved);
    ADD_FAILURE() << "loaded a conversation of another model";
  } catch (const SessionError& e) {
    EXPECT_NE(std::string(e.what()).find("another model"), std::string::npos) << e.what();
  }
}

TEST_F(ConversationTest, SeededSamplingIsReproducible) {
  TurnOptions o;
  o.sampling.temperature = 0.8f;
  o.sampling.seed = 1234;
  o.max_tokens = 12;
  Conversation a(*engine_, ""), b(*engine_, "");
  a.reply("roll the dice", o, {});
  b.reply("roll the dice", o, {});
  EXPECT_EQ(a.transcript(), b.transcript());
  o.sampling.seed = 99;
  Conversation d(*engine_, "");
  d.reply("roll the dice", o, {});
  EXPECT_NE(a.transcript(), d.transcript());
}

}  // namespace
}  // namespace magnetar::engine
