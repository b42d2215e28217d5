// ToolIdMap: unguessable ids, exact replay of a turn's block, the id and byte bounds (least
// recently used first), and finding the records whose block occurs in a text.
#include "kvcache/tool_id_map.h"

#include <gtest/gtest.h>

#include <random>
#include <regex>
#include <set>

namespace magnetar::kvcache {
namespace {

std::vector<std::string> ids(std::initializer_list<const char*> list) {
  return {list.begin(), list.end()};
}

TEST(ToolIdMap, NewIdsArePrefixedRandomHexAndDistinct) {
  ToolIdMap map;
  std::set<std::string> seen;
  const std::regex form("call_[0-9a-f]{32}");
  for (int i = 0; i < 2000; ++i) {
    std::string id = map.new_id("call_");
    ASSERT_TRUE(std::regex_match(id, form)) << id;
    EXPECT_TRUE(seen.insert(id).second) << "repeated id " << id;
  }
  // 2000 ids × 32 digits: every hex digit occurs, none dominates (a uniform source gives 4000
  // each).
  std::map<char, int> counts;
  for (const std::string& id : seen)
    for (char c : id.substr(5)) ++counts[c];
  ASSERT_EQ(counts.size(), 16u);
  for (const auto& [digit, n] : counts) EXPECT_NEAR(n, 4000, 400) << digit;
  EXPECT_TRUE(std::regex_match(map.new_id("toolu_"), std::regex("toolu_[0-9a-f]{32}")));
}

TEST(ToolIdMap, ReplaysATurnOnlyWhenEveryIdAgrees) {
  ToolIdMap map;
  const std::string turn1 = "<｜DSML｜tool_calls>one</｜DSML｜tool_calls>";
  const std::string turn2 = "<｜DSML｜tool_calls>two</｜DSML｜tool_calls>";
  ASSERT_TRUE(map.remember(ids({"a", "b"}), turn1));
  ASSERT_TRUE(map.remember(ids({"c"}), turn2));
  EXPECT_EQ(map.replay_block(ids({"a", "b"})), turn1);
  EXPECT_EQ(map.replay_block(ids({"b"})), turn1);
  EXPECT_EQ(map.replay_block(ids({"a", "c"})), std::nullopt) << "two different blocks";
  EXPECT_EQ(map.replay_block(ids({"a", "zz"})), std::nullopt) << "an unknown id";
  EXPECT_EQ(map.replay_block({}), std::nullopt);
  EXPECT_EQ(map.find("c"), turn2);
  EXPECT_EQ(map.find("zz"), std::nullopt);
  // Remapping an id moves it to the new block.
  ASSERT_TRUE(map.remember(ids({"a"}), turn2));
  EXPECT_EQ(map.replay_block(ids({"a", "c"})), turn2);
  EXPECT_FALSE(map.remember(ids({"d"}), "")) << "an empty block";
  EXPECT_FALSE(map.remember(ids({""}), turn1)) << "an empty id";
  EXPECT_EQ(map.size(), 3u);
}

TEST(ToolIdMap, BytesCountEachSharedBlockOnce) {
  ToolIdMap map;
  const std::string block(1000, 'x');
  map.remember(ids({"id1", "id22"}), block);
  constexpr size_t k = ToolIdMap::kOverheadBytes;
  EXPECT_EQ(map.bytes(), (3 + k) + (4 + k) + (1000 + k));
  map.remember(ids({"id1"}), "other");
  EXPECT_EQ(map.bytes(), (3 + k) + (4 + k) + (1000 + k) + (5 + k));
  map.remember(ids({"id22"}), "other");
  EXPECT_EQ(map.bytes(), (3 + k) + (4 + k) + (5 + k)) << "the unused block is released";
}

TEST(ToolIdMap, IdLimitForgetsTheLeastRecentlyUsed) {
  ToolIdMap map({.max_ids = 3, .max_bytes = 1 << 20});
  map.remember(ids({"a"}), "A");
  map.remember(ids({"b"}), "B");
  map.remember(ids({"c"}), "C");
  ASSERT_EQ(map.find("a"), "A");  // a is now the most recent; b the least
  EXPECT_TRUE(map.contains("b")) << "contains() is not a use: b stays the least recent";
  map.remember(ids({"d"}), "D");
  EXPECT_EQ(map.size(), 3u);
  EXPECT_FALSE(map.contains("b"));
  EXPECT_EQ(map.find("b"), std::nullopt);
  EXPECT_EQ(map.find("a"), "A");
  EXPECT_EQ(map.find("c"), "C");
  EXPECT_EQ(map.find("d"), "D");
}

TEST(ToolIdMap, ByteLimitForgetsTheLeastRecentlyUsed) {
  constexpr size_t k = ToolIdMap::kOverheadBytes;
  const size_t one = (1 + k) + (100 + k);  // one id with its own 100-byte block
  ToolIdMap map({.max_ids = 1000, .max_bytes = 2 * one + 10});
  map.remember(ids({"a"}), std::string(100, 'a'));
  map.remember(ids({"b"}), std::string(100, 'b'));
  EXPECT_EQ(map.bytes(), 2 * one);
  map.remember(ids({"c"}), std::string(100, 'c'));
  EXPECT_EQ(map.bytes(), 2 * one);
  EXPECT_EQ(map.find("a"), std::nullopt);
  EXPECT_TRUE(map.find("b") && map.find("c"));
  EXPECT_FALSE(map.remember(ids({"huge"}), std::string(2 * one, 'h'))) << "alone over the bound";
  EXPECT_EQ(map.size(), 2u);
}

TEST(ToolIdMap, RecordsWithinFindExactlyTheBlocksInTheText) {
  ToolIdMap map;
  const std::string b1 =
      "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"ls\">\n</｜DSML｜invoke>";
  const std::string b2 =
      "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"rm\">\n</｜DSML｜invoke>";
  const std::string b3 = "<x>";  // shorter than the anchor
  map.remember(ids({"id1", "id2"}), b1);
  map.remember(ids({"id3"}), b2);
  map.remember(ids({"id4"}), b3);
  std::string text = "<｜User｜>hi<｜Assistant｜>" + b1 + "<｜end▁of▁sentence｜>" + "y<x>z";
  text += b2.substr(0, b2.size() - 1);  // b2 cut short: not present
  std::vector<ToolCallRecord> got = map.records_within(text);
  std::set<std::string> got_ids;
  for (const ToolCallRecord& r : got) {
    got_ids.insert(r.id);
    EXPECT_NE(text.find(r.dsml), std::string::npos);
  }
  EXPECT_EQ(got_ids, (std::set<std::string>{"id1", "id2", "id4"}));
  EXPECT_EQ(got.front().id, "id4") << "most recently used first";
  EXPECT_TRUE(map.records_within("").empty());
}

TEST(ToolIdMap, RecordsWithinAgreesWithASubstringSearch) {
  std::mt19937 rng(7);
  auto random_text = [&](size_t n) {
    std::string s(n, ' ');
    for (char& c : s) c = "ab<>\n|"[rng() % 6];
    return s;
  };
  for (int round = 0; round < 20; ++round) {
    ToolIdMap map;
    std::vector<std::string> blocks;
    for (int i = 0; i < 30; ++i) {
      blocks.push_back(random_text(1 + rng() % 24));
      map.remember(std::vector<std::string>{"id" + std::to_string(i)}, blocks.back());
    }
    std::string text = random_text(3000);
    for (int i = 0; i < 5; ++i) text.insert(rng() % text.size(), blocks[rng() % blocks.size()]);
    std::set<std::string> expected, got;
    for (int i = 0; i < 30; ++i)
      if (text.find(blocks[i]) != std::string::npos) expected.insert("id" + std::to_string(i));
    for (const ToolCallRecord& r : map.records_within(text)) got.insert(r.id);
    EXPECT_EQ(got, expected) << "round " << round;
  }
}

TEST(ToolIdMap, RemembersRecordsFromDisk) {
  ToolIdMap map({.max_ids = 2, .max_bytes = 1 << 20});
  std::vector<ToolCallRecord> records = {{"x", "X"}, {"y", "Y"}, {"z", "Z"}, {"", "bad"}};
  map.remember(records);
  EXPECT_EQ(map.size(), 2u);
  EXPECT_EQ(map.find("z"), "Z");
  EXPECT_EQ(map.find("y"), "Y");
  EXPECT_EQ(map.find("x"), std::nullopt);
}

}  // namespace
}  // namespace magnetar::kvcache
