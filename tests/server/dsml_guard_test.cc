// The DSML structure guard: which positions of a tool-call block are sampled greedily
// (server-api.md §7.1 step 3), checked byte by byte against a hand-labelled block.
#include "server/dsml_guard.h"

#include <gtest/gtest.h>

namespace magnetar::server {
namespace {

// Feeds `pieces` one after the other; after each, checks structural() against the label.
struct Step {
  const char* text;
  bool structural;
};

void expect_steps(DsmlGuard& g, std::initializer_list<Step> steps) {
  for (const Step& s : steps) {
    g.feed(s.text);
    EXPECT_EQ(g.structural(), s.structural) << "after \"" << s.text << "\"";
  }
}

TEST(DsmlGuard, ContentAndReasoningAreNeverStructural) {
  DsmlGuard g(/*thinking=*/true);
  expect_steps(g, {{"I think <｜DSML｜tool_calls> is", false},  // inside reasoning: not a block
                   {"</think>", false},
                   {"Sure, ", false}});
  EXPECT_FALSE(g.in_block());
}

TEST(DsmlGuard, TagsAreStructuralPayloadsAreNot) {
  DsmlGuard g(/*thinking=*/false);
  expect_steps(g, {{"Let me check.\n\n", false},
                   {"<｜DSML｜tool_calls>", true},
                   {"\n<｜DSML｜invoke name=\"get_", true},
                   {"weather\">\n<｜DSML｜parameter name=\"city\" string=\"true\">", false},
                   {"Par", false},
                   {"is <", false},  // one byte of a closing tag: could be payload text
                   {"/", true},      // two bytes: the closing tag is being written
                   {"｜DSML｜parameter>", true},
                   {"\n<｜DSML｜parameter name=\"opts\" string=\"false\">", true},
                   {"{", true},
                   {"\"", false},         // inside a JSON string literal
                   {"uni\\\"ts", false},  // an escaped quote does not end it
                   {"\"", true},
                   {": 3, \"tags\": [\"a", false},
                   {"\"]}", true},
                   {"</｜DSML｜parameter>\n</｜DSML｜invoke>\n", true}});
  EXPECT_TRUE(g.in_block());
  EXPECT_FALSE(g.block_closed());
  g.feed("</｜DSML｜tool_calls>");
  EXPECT_TRUE(g.block_closed());
  EXPECT_FALSE(g.structural());
}

TEST(DsmlGuard, ReasoningTokensEndAtEndThink) {
  DsmlGuard g(true);
  EXPECT_TRUE(g.in_reasoning());
  g.feed("abc</thi");
  EXPECT_TRUE(g.in_reasoning());
  g.feed("nk>");
  EXPECT_FALSE(g.in_reasoning());
  EXPECT_FALSE(DsmlGuard(false).in_reasoning());
}

}  // namespace
}  // namespace magnetar::server
