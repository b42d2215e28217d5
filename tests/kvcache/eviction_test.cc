// Eviction under the byte budget (kv-cache.md §9): the directory stays within budget, and the file
// deleted is the one with the lowest (decayed hits + 1) · tokens / bytes, recomputed here from
// each entry's reported numbers.
#include "kvcache/eviction.h"

#include <gtest/gtest.h>

#include <cmath>
#include <optional>

#include "cache_fixture.h"

namespace magnetar::kvcache {
namespace {

// The spec's score, written out independently of eviction.cc.
double expected_score(uint64_t hits, int64_t last_used, uint64_t tokens, uint64_t bytes,
                      int64_t now) {
  double h =
      static_cast<double>(hits) * std::pow(0.5, static_cast<double>(now - last_used) / 21600.0);
  if (h < 0.01) h = 0;
  return (h + 1) * static_cast<double>(tokens) / static_cast<double>(bytes);
}

TEST(ChooseEvictions, LowestScoreFirstTiesToTheLeastRecentlyUsed) {
  const int64_t now = 1000000;
  std::vector<EvictionCandidate> c = {
      {"dense", 100, 50, 0, now, true, false},                   // 0.5
      {"sparse", 100, 10, 0, now, true, false},                  // 0.1
      {"hit", 100, 10, 4, now, true, false},                     // (4 + 1) · 0.1 = 0.5
      {"stale-hit", 100, 10, 4, now - 21600 * 20, true, false},  // 4 · 2^-20 < 0.01 → 0.1
      {"protected", 100, 1, 0, now, true, true},
  };
  EXPECT_NEAR(retention_score(c[2], now), 0.5, 1e-12);
  EXPECT_NEAR(retention_score(c[3], now), 0.1, 1e-12);
  EXPECT_NEAR(retention_score({"half", 100, 10, 2, now - 21600, true, false}, now), 0.2, 1e-12);
  // 500 bytes, budget 300: two go. sparse and stale-hit tie at 0.1; stale-hit was used longer ago.
  EXPECT_EQ(choose_evictions(c, 300, now), (std::vector<std::string>{"stale-hit", "sparse"}));
  EXPECT_TRUE(choose_evictions(c, 500, now).empty());
  // Everything but the protected file when the budget cannot be met otherwise.
  EXPECT_EQ(choose_evictions(c, 50, now).size(), 4u);
}

TEST(ChooseEvictions, UnusableFilesGoFirstOldestFirst) {
  const int64_t now = 1000000;
  std::vector<EvictionCandidate> c = {
      {"poor", 100, 1, 0, now - 5, true, false},
      {"foreign-new", 100, 0, 0, now, false, false},
      {"foreign-old", 100, 0, 0, now - 100, false, false},
  };
  EXPECT_EQ(choose_evictions(c, 200, now), (std::vector<std::string>{"foreign-old"}));
  EXPECT_EQ(choose_evictions(c, 100, now),
            (std::vector<std::string>{"foreign-old", "foreign-new"}));
}

using Eviction = CacheTest;

TEST_F(Eviction, StoresKeepTheDirectoryWithinBudget) {
  uint64_t one = 0;
  {
    DiskKvCache probe(options());
    one = store(probe, token_range(1000, 100), 20000).bytes;
    ASSERT_TRUE(probe.erase(probe.entries().at(0).name));
  }
  const uint64_t budget = one * 7 / 2;  // three entries fit, not four
  DiskKvCache cache(options(budget));
  for (int i = 0; i < 10; ++i) {
    clock_ += 10;
    StoreResult r = store(cache, token_range(1000 * (i + 2), 100), 20000);
    ASSERT_EQ(r.status, StoreResult::Status::kWritten);
    CacheStats s = cache.stats();
    EXPECT_LE(s.bytes, budget);
    EXPECT_EQ(s.bytes, entry_bytes_on_disk(dir_)) << "the accounting matches the disk";
    EXPECT_EQ(s.entries, static_cast<uint64_t>(std::min(i + 1, 3)));
    EXPECT_EQ(r.evicted.size(), i < 3 ? 0u : 1u);
    EXPECT_TRUE(
        cache.contains(token_range(1000 * (i + 2), 100), text_of(token_range(1000 * (i + 2), 100))))
        << "the entry just written is never the one evicted";
  }
  EXPECT_EQ(cache.stats().evictions, 7u);
  EXPECT_EQ(count_reports(CacheReport::Kind::kEvicted), 7);
}

TEST_F(Eviction, EvictsTheEntryWithTheLowestScore) {
  std::optional<DiskKvCache> cache(std::in_place, options(1 << 20));
  // Same payload size, different lengths: tokens per byte decides, until hits change it.
  std::vector<std::vector<int32_t>> prompts = {token_range(10, 40), token_range(100, 10),
                                               token_range(200, 20), token_range(300, 30)};
  for (const auto& p : prompts) {
    clock_ += 60;
    store(*cache, p, 50000);
  }
  // Three hits on the 10-token entry: (3 + 1) · 10 beats 20 and 30 tokens.
  for (int i = 0; i < 3; ++i) cache->load(*cache->lookup(prompts[1]));

  auto expected_victim = [&](int64_t now) {
    std::string best;
    double best_score = 1e300;
    int64_t best_used = 0;
    for (const EntryInfo& e : cache->entries()) {
      double s = expected_score(e.hits, e.last_used, e.token_count, e.file_bytes, now);
      if (s < best_score || (s == best_score && e.last_used < best_used)) {
        best = e.name;
        best_score = s;
        best_used = e.last_used;
      }
    }
    return best;
  };
  auto name_of = [&](const std::vector<int32_t>& p) { return cache->lookup(p)->name; };

  // Tighten the budget by reopening: the cache evicts on open.
  std::string victim = expected_victim(clock_);
  EXPECT_EQ(victim, name_of(prompts[2])) << "20 tokens: lowest once the 10-token entry has hits";
  uint64_t total = cache->stats().bytes, smallest = total;
  for (const EntryInfo& e : cache->entries()) smallest = std::min(smallest, e.file_bytes);
  cache.emplace(options(total - smallest / 2));  // the same directory, a tighter budget
  EXPECT_EQ(count_reports(CacheReport::Kind::kEvicted, victim), 1) << all_reports();
  EXPECT_EQ(cache->stats().entries, 3u);

  // Ten half-lives later 3 hits count 3 · 2^-10 < 0.01, so nothing: 10 tokens is the poorest.
  clock_ += 21600 * 10;
  victim = expected_victim(clock_);
  EXPECT_EQ(victim, name_of(prompts[1]));
  clock_ += 1;
  StoreResult r = store(*cache, token_range(5000, 25), 50000);
  ASSERT_EQ(r.status, StoreResult::Status::kWritten);
  EXPECT_EQ(r.evicted, std::vector<std::string>{victim});
}

TEST_F(Eviction, FilesOfAnotherModelGoBeforeUsableEntries) {
  {
    DiskKvCache other(options(1 << 30, identity(2)));
    store(other, token_range(1, 500), 30000);
  }
  std::optional<DiskKvCache> cache(std::in_place, options(1 << 30));
  EXPECT_EQ(count_reports(CacheReport::Kind::kUnusable), 1);
  EXPECT_EQ(cache->stats().unusable_files, 1u);
  ASSERT_EQ(store(*cache, token_range(1000, 10), 30000).status,  // a poor entry: 10 tokens
            StoreResult::Status::kWritten);
  const uint64_t total = cache->stats().bytes;
  EXPECT_EQ(total, entry_bytes_on_disk(dir_)) << "the foreign file counts against the budget";
  // Room for two files only: the foreign one goes although it holds 50 times more tokens.
  cache.emplace(options(total + 100));
  clock_ += 1;
  StoreResult b = store(*cache, token_range(2000, 10), 30000);
  ASSERT_EQ(b.evicted.size(), 1u);
  EXPECT_EQ(cache->stats().unusable_files, 0u);
  EXPECT_EQ(cache->stats().entries, 2u);
  EXPECT_TRUE(cache->lookup(token_range(1000, 10)).has_value());
}

TEST_F(Eviction, AnEntryLargerThanTheBudgetIsNotWritten) {
  DiskKvCache cache(options(100000));
  StoreResult small = store(cache, token_range(1, 10), 1000);
  ASSERT_EQ(small.status, StoreResult::Status::kWritten);
  StoreResult big = store(cache, token_range(500, 10), 200000);
  EXPECT_EQ(big.status, StoreResult::Status::kOverBudget);
  EXPECT_GT(big.bytes, 200000u);
  EXPECT_EQ(files_in(dir_).size(), 2u) << "the small entry and the lock file";
  EXPECT_TRUE(cache.lookup(token_range(1, 10)).has_value());
}

}  // namespace
}  // namespace magnetar::kvcache
