// The exact-replay memory: unguessable unique ids, one block per turn, LRU eviction by id count
// and by bytes, and the entries a checkpoint text carries.
#include "server/tool_memory.h"

#include <gtest/gtest.h>

#include <regex>
#include <set>

namespace magnetar::server {
namespace {

TEST(ToolMemory, IdsAreRandomHexWithThePrefix) {
  ToolMemory m(10, 1 << 20);
  std::set<std::string> seen;
  const std::regex shape("call_[0-9a-f]{32}");
  for (int i = 0; i < 1000; ++i) {
    std::string id = m.new_id("call_");
    ASSERT_TRUE(std::regex_match(id, shape)) << id;
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 1000u);
  EXPECT_TRUE(m.new_id("toolu_").starts_with("toolu_"));
}

TEST(ToolMemory, AllIdsOfATurnMapToItsBlock) {
  ToolMemory m(10, 1 << 20);
  m.remember({"a", "b"}, "BLOCK1");
  m.remember({"c"}, "BLOCK2");
  EXPECT_EQ(m.block_for({"a"}), "BLOCK1");
  EXPECT_EQ(m.block_for({"a", "b"}), "BLOCK1");
  EXPECT_EQ(m.block_for({"c"}), "BLOCK2");
  EXPECT_FALSE(m.block_for({"a", "c"})) << "ids of different turns";
  EXPECT_FALSE(m.block_for({"a", "zzz"})) << "an unknown id";
  EXPECT_FALSE(m.block_for({}));
  EXPECT_EQ(m.size(), 3u);
}

TEST(ToolMemory, LeastRecentlyUsedIdGoesFirst) {
  ToolMemory m(3, 1 << 20);
  m.remember({"a"}, "A");
  m.remember({"b"}, "B");
  m.remember({"c"}, "C");
  EXPECT_TRUE(m.block_for({"a"}));  // refreshes a: b is now the oldest
  m.remember({"d"}, "D");
  EXPECT_TRUE(m.contains("a"));
  EXPECT_FALSE(m.contains("b"));
  EXPECT_TRUE(m.contains("c"));
  EXPECT_TRUE(m.contains("d"));
}

TEST(ToolMemory, ByteBudgetCountsIdsAndEachBlockOnce) {
  const std::string block1(100, 'x'), block2(100, 'y');
  ToolMemory m(100, 215);
  m.remember({"id1", "id2"}, block1);
  EXPECT_EQ(m.bytes(), 3u + 3u + 100u);
  m.remember({"id3"}, block2);
  EXPECT_EQ(m.bytes(), 209u);
  m.remember({"id4"}, "zz");
  EXPECT_EQ(m.bytes(), 214u);
  m.remember({"id5"}, "w");  // 218 > 215: the oldest id goes; its block stays, id2 holds it
  EXPECT_FALSE(m.contains("id1"));
  EXPECT_EQ(m.bytes(), 215u);
  EXPECT_EQ(m.block_for({"id2"}), block1);    // refreshes id2: id3 is now the oldest
  m.remember({"id6"}, std::string(97, 'v'));  // 315: id3 and block2 go, leaving 212
  EXPECT_FALSE(m.contains("id3"));
  EXPECT_TRUE(m.contains("id4"));
  EXPECT_TRUE(m.contains("id2"));
  EXPECT_EQ(m.bytes(), (3u + 100u) + (3u + 2u) + (3u + 1u) + (3u + 97u));
}

TEST(ToolMemory, EntriesInATextAreThoseWhoseBlockOccurs) {
  ToolMemory m(10, 1 << 20);
  m.remember({"a", "b"}, "<calls1>");
  m.remember({"c"}, "<calls2>");
  auto entries = m.entries_in("prompt <calls1> more");
  std::set<std::pair<std::string, std::string>> got(entries.begin(), entries.end());
  EXPECT_EQ(got,
            (std::set<std::pair<std::string, std::string>>{{"a", "<calls1>"}, {"b", "<calls1>"}}));
  EXPECT_TRUE(m.entries_in("nothing").empty());
}

}  // namespace
}  // namespace magnetar::server
