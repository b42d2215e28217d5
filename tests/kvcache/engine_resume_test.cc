// The point of the disk cache, end to end on the tiny model: a long prefix saved by one Engine is
// found and loaded by a fresh Engine and cache (a server restart), and continues with no prefill
// and with logits identical to a fresh prefill; an entry whose payload the engine refuses is
// erased.
#include <gtest/gtest.h>

#include <chrono>
#include <optional>

#include "cache_fixture.h"
#include "engine/engine.h"
#include "kvcache/checkpoint_policy.h"
#include "tiny_model.h"

namespace magnetar::kvcache {
namespace {

std::vector<float> fresh_logits(engine::Engine& engine, const std::vector<int32_t>& tokens) {
  std::unique_ptr<engine::Session> s = engine.new_session();
  s->set_tokens(tokens);
  engine::Session* one = s.get();
  engine.step(std::span(&one, 1));
  return {s->logits().begin(), s->logits().end()};
}

engine::EngineOptions tiny_engine(uint64_t seed) {
  engine::EngineOptions o;
  o.model = testing::tiny_model("f32", seed, /*with_mtp=*/false);
  o.backend = "cpu";
  o.prefill_chunk = 64;
  return o;
}

using EngineResume = CacheTest;

TEST_F(EngineResume, ARestartResumesALongPrefixWithoutPrefill) {
  const std::vector<int32_t> prefix = testing::random_tokens(600, 21);
  const std::vector<int32_t> suffix = testing::random_tokens(9, 22);
  std::vector<int32_t> request = prefix;
  request.insert(request.end(), suffix.begin(), suffix.end());
  CheckpointPolicy policy({});
  ASSERT_TRUE(policy.evict_save_due(static_cast<int64_t>(prefix.size())));

  std::vector<float> saved_logits;
  {
    engine::Engine engine(tiny_engine(5));
    std::unique_ptr<engine::Session> s = engine.new_session();
    s->set_tokens(prefix);
    engine::Session* one = s.get();
    engine.step(std::span(&one, 1));
    saved_logits.assign(s->logits().begin(), s->logits().end());
    DiskKvCache cache(options(1 << 30, engine.identity()));
    const std::vector<uint8_t> payload = s->save();
    const std::string text = engine.tokenizer().decode(prefix);
    StoreResult r = cache.store(
        {.tokens = prefix, .key_text = text, .payload = payload, .reason = SaveReason::kEvict});
    ASSERT_EQ(r.status, StoreResult::Status::kWritten);
    std::cout << "entry of " << prefix.size() << " tokens: " << r.bytes << " bytes\n";
  }

  // The restart: a new engine on the same model, a new cache on the same directory.
  engine::Engine engine(tiny_engine(5));
  DiskKvCache cache(options(1 << 30, engine.identity()));
  const std::string request_text = engine.tokenizer().decode(request);
  std::optional<EntryInfo> hit = cache.lookup_text(request_text);
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(cache.lookup(request)->name, hit->name);
  ASSERT_TRUE(policy.may_load(static_cast<int64_t>(hit->token_count)));
  auto start = std::chrono::steady_clock::now();
  LoadedEntry loaded = cache.load(*hit);
  std::unique_ptr<engine::Session> s = engine.new_session();
  s->load(loaded.payload);
  double load_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  std::cout << "load + restore: " << load_ms << " ms\n";
  EXPECT_FALSE(policy.consume_after_load(static_cast<int64_t>(loaded.tokens.size())));

  EXPECT_EQ(loaded.tokens, prefix);
  EXPECT_EQ(s->tokens(), prefix);
  EXPECT_EQ(s->set_tokens(prefix), 0) << "nothing to prefill";
  std::vector<float> restored(s->logits().begin(), s->logits().end());
  EXPECT_EQ(restored, saved_logits);
  EXPECT_EQ(restored, fresh_logits(engine, prefix)) << "identical to a fresh prefill";

  EXPECT_EQ(s->set_tokens(request), static_cast<int64_t>(suffix.size()))
      << "only the suffix is pending";
  engine::Session* one = s.get();
  engine.step(std::span(&one, 1));
  std::vector<float> continued(s->logits().begin(), s->logits().end());
  EXPECT_EQ(continued, fresh_logits(engine, request));
}

TEST_F(EngineResume, AnotherModelsEntriesAreNeverLoaded) {
  engine::Engine a(tiny_engine(5));
  engine::Engine b(tiny_engine(6));
  ASSERT_NE(a.identity(), b.identity());
  const std::vector<int32_t> prefix = testing::random_tokens(40, 3);
  {
    std::unique_ptr<engine::Session> s = a.new_session();
    s->set_tokens(prefix);
    engine::Session* one = s.get();
    a.step(std::span(&one, 1));
    DiskKvCache cache(options(1 << 30, a.identity()));
    const std::vector<uint8_t> payload = s->save();
    cache.store({.tokens = prefix, .key_text = a.tokenizer().decode(prefix), .payload = payload});
  }
  DiskKvCache cache(options(1 << 30, b.identity()));
  EXPECT_EQ(count_reports(CacheReport::Kind::kUnusable), 1);
  EXPECT_FALSE(cache.lookup(prefix).has_value());
}

// A file whose checksums hold but whose payload the engine refuses (here: a payload of another
// model stored under this model's identity, as a bug could) fails in Session::load, which
// changes nothing; the server then erases the entry.
TEST_F(EngineResume, APayloadTheEngineRefusesIsErased) {
  engine::Engine a(tiny_engine(5));
  engine::Engine b(tiny_engine(6));
  const std::vector<int32_t> prefix = testing::random_tokens(30, 4);
  std::unique_ptr<engine::Session> s = a.new_session();
  s->set_tokens(prefix);
  engine::Session* one = s.get();
  a.step(std::span(&one, 1));
  const std::vector<uint8_t> payload = s->save();
  DiskKvCache cache(options(1 << 30, b.identity()));
  cache.store({.tokens = prefix, .key_text = "x", .payload = payload});
  LoadedEntry loaded = cache.load(*cache.lookup(prefix));
  std::unique_ptr<engine::Session> target = b.new_session();
  EXPECT_THROW(target->load(loaded.payload), engine::SessionError);
  EXPECT_EQ(target->processed(), 0);
  EXPECT_TRUE(cache.erase(loaded.info.name));
  EXPECT_FALSE(cache.lookup(prefix).has_value());
}

}  // namespace
}  // namespace magnetar::kvcache
