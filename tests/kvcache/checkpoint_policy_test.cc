// CheckpointPolicy against the rules and worked examples of kv-cache.md §8 and §10.
#include "kvcache/checkpoint_policy.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <vector>

namespace magnetar::kvcache {
namespace {

constexpr int32_t kUser = 128803, kAssistant = 128804, kOther = 7;

std::vector<int32_t> prompt(int64_t n, std::vector<std::pair<int64_t, int32_t>> marks = {}) {
  std::vector<int32_t> p(static_cast<size_t>(n), kOther);
  for (auto [at, token] : marks) p[static_cast<size_t>(at)] = token;
  return p;
}

TEST(CheckpointPolicy, ColdLengthFollowsTheSpecExamples) {
  CheckpointPolicy policy({});  // defaults: min 512, cold max 30000, trim 32, align 2048
  // 11011 − 32 = 10979, aligned down to 2048 → 10240.
  EXPECT_EQ(policy.cold_save_length(prompt(11011), kUser, kAssistant), 10240);
  // 1695 − 32 = 1663 → 0 after alignment, below min: the whole prompt.
  EXPECT_EQ(policy.cold_save_length(prompt(1695), kUser, kAssistant), 1695);
  // Exactly min + trim: not longer than min + trim, so the whole prompt.
  EXPECT_EQ(policy.cold_save_length(prompt(544), kUser, kAssistant), 544);
}

TEST(CheckpointPolicy, ColdLengthAnchorsBeforeTheTaskStatingUserTurn) {
  CheckpointPolicy policy({});
  // Users at 100 and 5000, the first assistant at 5100, a later user at 6000: the anchor is 5000.
  auto p = prompt(7000, {{100, kUser}, {5000, kUser}, {5100, kAssistant}, {6000, kUser}});
  EXPECT_EQ(policy.cold_save_length(p, kUser, kAssistant), 5000);
  // An anchor below min falls back to the stable length: 7000 − 32 → 6144.
  auto q = prompt(7000, {{300, kUser}, {400, kAssistant}});
  EXPECT_EQ(policy.cold_save_length(q, kUser, kAssistant), 6144);
  // No assistant token: no anchor.
  auto r = prompt(7000, {{5000, kUser}});
  EXPECT_EQ(policy.cold_save_length(r, kUser, kAssistant), 6144);
}

TEST(CheckpointPolicy, ColdSavesOnlyInsideTheirRange) {
  CheckpointPolicy policy({});
  EXPECT_EQ(policy.cold_save_length(prompt(511), kUser, kAssistant), 0);
  EXPECT_EQ(policy.cold_save_length(prompt(512), kUser, kAssistant), 512);
  EXPECT_EQ(policy.cold_save_length(prompt(30000), kUser, kAssistant), 28672);
  EXPECT_EQ(policy.cold_save_length(prompt(30001), kUser, kAssistant), 0);
  CheckpointPolicy off({.cold_max_tokens = 0});
  EXPECT_EQ(off.cold_save_length(prompt(5000), kUser, kAssistant), 0);
  CheckpointPolicy no_align({.boundary_align_tokens = 0});
  EXPECT_EQ(no_align.cold_save_length(prompt(11011), kUser, kAssistant), 10979);
}

TEST(CheckpointPolicy, ContinuedSavesLandOnAlignedMultiples) {
  CheckpointPolicy policy({});
  EXPECT_EQ(policy.continued_step(), 10240);  // ⌈10000 / 2048⌉ · 2048
  EXPECT_TRUE(policy.continued_save_due(10240, 0));
  EXPECT_FALSE(policy.continued_save_due(10240, 10240))
      << "already written (e.g. by the cold save)";
  EXPECT_FALSE(policy.continued_save_due(10241, 0));
  EXPECT_TRUE(policy.continued_save_due(20480, 10240));
  EXPECT_FALSE(policy.continued_save_due(0, 0));
  EXPECT_EQ(CheckpointPolicy({.boundary_align_tokens = 0}).continued_step(), 10000);
  CheckpointPolicy off({.continued_interval_tokens = 0});
  EXPECT_EQ(off.continued_step(), 0);
  EXPECT_FALSE(off.continued_save_due(10240, 0));
  // A step below min: multiples below min are not saved.
  CheckpointPolicy small(
      {.min_tokens = 3000, .continued_interval_tokens = 1000, .boundary_align_tokens = 0});
  EXPECT_FALSE(small.continued_save_due(2000, 0));
  EXPECT_TRUE(small.continued_save_due(3000, 0));
}

TEST(CheckpointPolicy, EvictLoadAndConsumeThresholds) {
  CheckpointPolicy policy({});
  EXPECT_FALSE(policy.evict_save_due(511));
  EXPECT_TRUE(policy.evict_save_due(512));
  EXPECT_FALSE(policy.may_load(511));
  EXPECT_TRUE(policy.may_load(512));
  EXPECT_FALSE(policy.consume_after_load(30000));
  EXPECT_TRUE(policy.consume_after_load(30001));
  EXPECT_FALSE(CheckpointPolicy({.cold_max_tokens = 0}).consume_after_load(1 << 20));
}

TEST(CheckpointPolicy, RejectsInconsistentOptions) {
  EXPECT_THROW(CheckpointPolicy({.min_tokens = 512, .cold_max_tokens = 100}),
               std::invalid_argument);
  EXPECT_THROW(CheckpointPolicy({.min_tokens = 0}), std::invalid_argument);
  EXPECT_THROW(CheckpointPolicy({.boundary_trim_tokens = -1}), std::invalid_argument);
  EXPECT_NO_THROW(CheckpointPolicy({.min_tokens = 512, .cold_max_tokens = 0}));
}

}  // namespace
}  // namespace magnetar::kvcache
