#include "engine/stop_matcher.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

namespace magnetar::engine {
namespace {

// Feeds every piece and returns all emitted text, the flush included when no stop was hit.
struct Streamed {
  std::vector<std::string> emitted;  // per piece
  std::string text;                  // everything shown
  std::optional<size_t> stop;
};

Streamed run(StopMatcher& matcher, const std::vector<std::string>& pieces) {
  Streamed r;
  for (const std::string& piece : pieces) {
    StopMatcher::Output out = matcher.feed(piece);
    r.emitted.push_back(out.text);
    r.text += out.text;
    if (out.stop.has_value()) r.stop = out.stop;
  }
  r.text += matcher.flush();
  return r;
}

std::vector<std::string> bytes_of(const std::string& s) {
  std::vector<std::string> pieces;
  for (char c : s) pieces.emplace_back(1, c);
  return pieces;
}

TEST(StopMatcher, WithoutStopStringsEverythingStreamsImmediately) {
  StopMatcher m({});
  Streamed r = run(m, {"Hello", " wor", "ld"});
  EXPECT_EQ(r.emitted, (std::vector<std::string>{"Hello", " wor", "ld"}));
  EXPECT_EQ(r.text, "Hello world");
  EXPECT_FALSE(r.stop.has_value());
}

TEST(StopMatcher, StopAtPieceBoundaryEmitsTheTextBefore) {
  StopMatcher m({"END"});
  Streamed r = run(m, {"abc", "END", "more"});
  EXPECT_EQ(r.emitted, (std::vector<std::string>{"abc", "", ""}));
  EXPECT_EQ(r.text, "abc");
  EXPECT_EQ(r.stop, 0u);
  EXPECT_TRUE(m.stopped());
}

TEST(StopMatcher, StopInsideAPieceCutsIt) {
  StopMatcher m({"END"});
  Streamed r = run(m, {"abcENDxyz"});
  EXPECT_EQ(r.text, "abc");
  EXPECT_EQ(r.stop, 0u);
}

TEST(StopMatcher, StopSplitAcrossManyPieces) {
  StopMatcher m({"<|stop|>"});
  Streamed r = run(m, bytes_of("answer: 42<|stop|>trailing"));
  EXPECT_EQ(r.text, "answer: 42");
  EXPECT_EQ(r.stop, 0u);
  // Ordinary bytes are shown as they arrive; only the '<' onwards waits.
  EXPECT_EQ(r.emitted[0], "a");
  for (size_t i = 10; i < r.emitted.size(); ++i) EXPECT_EQ(r.emitted[i], "") << i;
}

TEST(StopMatcher, HoldsOnlyATailThatCouldStartAStop) {
  StopMatcher m({"</end>"});
  EXPECT_EQ(m.feed("a<").text, "a");
  EXPECT_EQ(m.feed("/e").text, "");
  EXPECT_EQ(m.feed("x").text, "</ex");
  EXPECT_EQ(m.flush(), "");
}

TEST(StopMatcher, OverlappingFalseStartIsReleasedCorrectly) {
  StopMatcher m({"aab"});
  Streamed r = run(m, bytes_of("aaab"));
  EXPECT_EQ(r.text, "a");
  EXPECT_EQ(r.stop, 0u);
}

TEST(StopMatcher, EarliestMatchWinsAmongPrefixStops) {
  {
    StopMatcher m({"ab", "abc"});
    Streamed r = run(m, {"x", "a", "bc"});
    EXPECT_EQ(r.text, "x");
    EXPECT_EQ(r.stop, 0u);
  }
  {
    StopMatcher m({"abc", "b"});
    Streamed r = run(m, {"xabc"});
    EXPECT_EQ(r.text, "x");
    EXPECT_EQ(r.stop, 0u);
  }
  {
    // A stop is hit as soon as one is complete: "c" ends the text even though "bcd", which
    // starts earlier, might have completed one byte later.
    StopMatcher m({"bcd", "c"});
    Streamed r = run(m, bytes_of("abcd"));
    EXPECT_EQ(r.text, "ab");
    EXPECT_EQ(r.stop, 1u);
  }
}

TEST(StopMatcher, MultipleStopStrings) {
  StopMatcher m({"STOP", "\n\n"});
  Streamed r = run(m, {"line", "\n", "\nmore STOP"});
  EXPECT_EQ(r.text, "line");
  EXPECT_EQ(r.stop, 1u);
}

TEST(StopMatcher, EmptyStopStringsAreIgnoredButKeepTheirIndex) {
  StopMatcher m({"", "X"});
  Streamed r = run(m, {"aXb"});
  EXPECT_EQ(r.text, "a");
  EXPECT_EQ(r.stop, 1u);
}

TEST(StopMatcher, NeverEmitsPartOfAUtf8Character) {
  StopMatcher m({});
  // "h", é (C3 A9) split across pieces, then U+1F600 (F0 9F 98 80) one byte per piece.
  EXPECT_EQ(m.feed("h\xC3").text, "h");
  EXPECT_EQ(m.feed("\xA9l").text, "\xC3\xA9l");
  EXPECT_EQ(m.feed("\xF0").text, "");
  EXPECT_EQ(m.feed("\x9F").text, "");
  EXPECT_EQ(m.feed("\x98").text, "");
  EXPECT_EQ(m.feed("\x80!").text, "\xF0\x9F\x98\x80!");
}

TEST(StopMatcher, MultiByteStopStringFedBytewise) {
  StopMatcher m({"\xE2\x86\x92"});  // →
  Streamed r = run(m, bytes_of("a\xC3\xA9\xE2\x86\x92z"));
  EXPECT_EQ(r.text, "a\xC3\xA9");
  EXPECT_EQ(r.stop, 0u);
}

TEST(StopMatcher, MultiByteStopPrefixThenDivergence) {
  StopMatcher m({"\xC3\xA9x"});  // éx
  EXPECT_EQ(m.feed("a\xC3\xA9").text, "a");
  EXPECT_EQ(m.feed("y").text, "\xC3\xA9y");
  EXPECT_FALSE(m.stopped());
}

TEST(StopMatcher, FlushReturnsTheHeldTailWhenGenerationEnds) {
  StopMatcher m({"END"});
  EXPECT_EQ(m.feed("xEN").text, "x");
  EXPECT_EQ(m.flush(), "EN");
  StopMatcher u({});
  EXPECT_EQ(u.feed("a\xE2\x86").text, "a");
  EXPECT_EQ(u.flush(), "\xE2\x86");
}

TEST(StopMatcher, PiecesAfterAStopAreIgnored) {
  StopMatcher m({"."});
  EXPECT_EQ(m.feed("done.").stop, 0u);
  StopMatcher::Output after = m.feed("more");
  EXPECT_EQ(after.text, "");
  EXPECT_FALSE(after.stop.has_value());
  EXPECT_EQ(m.flush(), "");
}

}  // namespace
}  // namespace magnetar::engine
