// The disk state store on the tiny model with a real engine: a saved state restored by a fresh
// store (a restart) continues exactly like a fresh prefill; a damaged file is reported, deleted and
// the request served anyway; the budget holds after many saves; another model's entries are never
// loaded; failed saves are logged and counted; tool-call records come back; and the scheduler
// saves and restores through it.
#include "server/disk_state_store.h"

#include <gtest/gtest.h>

#include <fstream>

#include "chat/template_strings.h"
#include "server/openai_api.h"
#include "server/scheduler.h"
#include "tiny_model.h"

namespace magnetar::server {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using kvcache::KeyKind;
using kvcache::SaveReason;

engine::Engine* make_engine(uint64_t seed) {
  engine::EngineOptions o;
  o.model = testing::tiny_model("f32", seed, /*with_mtp=*/false);
  o.backend = "cpu";
  o.context = 2048;
  o.prefill_chunk = 64;
  return new engine::Engine(o);
}

// A metric's value in the Prometheus text: the sample named exactly `name` (labels included);
// 0 when it is absent.
double metric(const Metrics& m, const std::string& name) {
  const std::string text = m.render();
  const std::string head = "\n" + name + " ";
  size_t at = text.find(head);
  return at == std::string::npos ? 0 : std::stod(text.substr(at + head.size()));
}

uint64_t entry_bytes_on_disk(const fs::path& dir) {
  uint64_t total = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ".mkv") total += e.file_size();
  }
  return total;
}

void flip_byte(const fs::path& path, uint64_t offset) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  f.get(c);
  f.seekp(static_cast<std::streamoff>(offset));
  f.put(static_cast<char>(c ^ 0x40));
}

class DiskStateStoreTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    engine_ = make_engine(5);
    other_ = make_engine(6);
  }
  static void TearDownTestSuite() {
    delete engine_;
    delete other_;
  }

  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = testing::scratch_dir("disk_state_store") / info->name();
    fs::remove_all(dir_);
  }

  DiskStoreOptions options(int64_t min_tokens = 16) const {
    DiskStoreOptions o;
    o.dir = dir_;
    o.budget_bytes = uint64_t{1} << 30;
    o.checkpoints.min_tokens = min_tokens;
    return o;
  }

  // A session that has processed `tokens` on `engine`.
  static std::unique_ptr<engine::Session> prefilled(engine::Engine& engine,
                                                    const std::vector<int32_t>& tokens) {
    std::unique_ptr<engine::Session> s = engine.new_session();
    s->set_tokens(tokens);
    engine::Session* one = s.get();
    engine.step(std::span(&one, 1));
    return s;
  }

  static std::vector<float> fresh_logits(const std::vector<int32_t>& tokens) {
    std::unique_ptr<engine::Session> s = prefilled(*engine_, tokens);
    return {s->logits().begin(), s->logits().end()};
  }

  static std::string text_of(const std::vector<int32_t>& tokens) {
    return engine_->tokenizer().decode(tokens);
  }

  static engine::Engine* engine_;
  static engine::Engine* other_;
  fs::path dir_;
};
engine::Engine* DiskStateStoreTest::engine_ = nullptr;
engine::Engine* DiskStateStoreTest::other_ = nullptr;

TEST_F(DiskStateStoreTest, ARestoredStateContinuesExactlyLikeAFreshPrefill) {
  // The prefix ends with a tool-call block the map knows: the entry carries its record.
  const std::string block = "[[a sampled tool-call block]]";
  std::vector<int32_t> prefix = testing::random_tokens(600, 21);
  std::vector<int32_t> block_tokens = engine_->tokenizer().encode(block);
  prefix.insert(prefix.end(), block_tokens.begin(), block_tokens.end());
  const std::vector<int32_t> suffix = testing::random_tokens(9, 22);
  std::vector<int32_t> request = prefix;
  request.insert(request.end(), suffix.begin(), suffix.end());
  const std::string key = text_of(prefix);
  ASSERT_NE(key.find(block), std::string::npos);
  {
    kvcache::ToolIdMap tools;
    tools.remember(std::vector<std::string>{"call_1", "call_2"}, block);
    tools.remember(std::vector<std::string>{"call_other"}, "[[a block not in the text]]");
    Metrics metrics;
    DiskStateStore store(options(), *engine_, &tools, metrics);
    std::unique_ptr<engine::Session> s = prefilled(*engine_, prefix);
    store.save(SaveReason::kEvict, *s, key, KeyKind::kTokenText);
    EXPECT_EQ(metric(metrics, "magnetar_kv_disk_saves_total{reason=\"evict\"}"), 1);
    ASSERT_EQ(store.entries().size(), 1u);
    EXPECT_EQ(store.entries()[0].token_count, prefix.size());
    EXPECT_EQ(store.entries()[0].tool_calls, 2u) << "call_1 and call_2, not call_other";
  }

  // The restart: a new store and tool map on the same directory, a fresh session.
  kvcache::ToolIdMap tools;
  Metrics metrics;
  DiskStateStore store(options(), *engine_, &tools, metrics);
  std::unique_ptr<engine::Session> s = engine_->new_session();
  EXPECT_EQ(store.restore("unrelated text", *s), std::nullopt);
  EXPECT_EQ(metric(metrics, "magnetar_kv_disk_misses_total"), 1);
  std::optional<size_t> covered = store.restore(text_of(request), *s);
  ASSERT_EQ(covered, key.size());
  EXPECT_EQ(s->tokens(), prefix);
  EXPECT_EQ(s->set_tokens(prefix), 0) << "nothing to prefill";
  std::vector<float> restored(s->logits().begin(), s->logits().end());
  EXPECT_EQ(restored, fresh_logits(prefix)) << "bit for bit";
  EXPECT_EQ(s->set_tokens(request), static_cast<int64_t>(suffix.size()));
  engine::Session* one = s.get();
  engine_->step(std::span(&one, 1));
  std::vector<float> continued(s->logits().begin(), s->logits().end());
  EXPECT_EQ(continued, fresh_logits(request));

  EXPECT_EQ(tools.replay_block(std::vector<std::string>{"call_1", "call_2"}), block);
  EXPECT_FALSE(tools.contains("call_other"));
  EXPECT_EQ(metric(metrics, "magnetar_kv_disk_hits_total"), 1);
  EXPECT_EQ(metric(metrics, "magnetar_kv_disk_loaded_tokens_total"),
            static_cast<double>(prefix.size()));
  EXPECT_EQ(store.entries()[0].hits, 1u) << "600 tokens ≤ cold max: kept, its hit counted";
}

TEST_F(DiskStateStoreTest, LongCheckpointsAreConsumedOnLoad) {
  DiskStoreOptions o = options();
  o.checkpoints.cold_max_tokens = 100;
  const std::vector<int32_t> prefix = testing::random_tokens(150, 3);
  Metrics metrics;
  DiskStateStore store(o, *engine_, nullptr, metrics);
  store.save(SaveReason::kShutdown, *prefilled(*engine_, prefix), text_of(prefix),
             KeyKind::kTokenText);
  ASSERT_EQ(store.stats().entries, 1u);
  std::unique_ptr<engine::Session> s = engine_->new_session();
  ASSERT_TRUE(store.restore(text_of(prefix), *s));
  EXPECT_EQ(store.stats().entries, 0u) << "150 > cold max 100: the live session owns it now";
  EXPECT_EQ(entry_bytes_on_disk(dir_), 0u);
}

TEST_F(DiskStateStoreTest, AFlippedByteIsReportedAndDeletedAndNothingIsLoaded) {
  const std::vector<int32_t> prefix = testing::random_tokens(300, 7);
  std::string name;
  {
    Metrics metrics;
    DiskStateStore store(options(), *engine_, nullptr, metrics);
    store.save(SaveReason::kEvict, *prefilled(*engine_, prefix), text_of(prefix),
               KeyKind::kTokenText);
    name = store.entries().at(0).name;
  }
  const fs::path file = dir_ / name;
  flip_byte(file, fs::file_size(file) / 2);  // in the payload: only the file checksum sees it

  Metrics metrics;
  ::testing::internal::CaptureStderr();
  DiskStateStore store(options(), *engine_, nullptr, metrics);
  EXPECT_EQ(store.stats().entries, 1u) << "the metadata is intact: indexed";
  std::unique_ptr<engine::Session> s = engine_->new_session();
  EXPECT_EQ(store.restore(text_of(prefix), *s), std::nullopt);
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(s->processed(), 0) << "the session is unchanged";
  EXPECT_FALSE(fs::exists(file));
  EXPECT_NE(log.find("kv cache: damaged " + name + ": refused and deleted: file checksum mismatch"),
            std::string::npos)
      << log;
  EXPECT_EQ(metric(metrics, "magnetar_kv_disk_damaged_total"), 1);
  EXPECT_EQ(metric(metrics, "magnetar_kv_disk_misses_total"), 1);
  EXPECT_EQ(metric(metrics, "magnetar_kv_disk_entries"), 0);
}

TEST_F(DiskStateStoreTest, ADamagedLongerEntryFallsBackToAShorterOne) {
  const std::vector<int32_t> all = testing::random_tokens(200, 8);
  const std::vector<int32_t> shorter(all.begin(), all.begin() + 120);
  Metrics metrics;
  DiskStateStore store(options(), *engine_, nullptr, metrics);
  store.save(SaveReason::kCold, *prefilled(*engine_, shorter), text_of(shorter),
             KeyKind::kTokenText);
  store.save(SaveReason::kEvict, *prefilled(*engine_, all), text_of(all), KeyKind::kTokenText);
  ASSERT_EQ(store.stats().entries, 2u);
  const kvcache::EntryInfo longer =
      store.entries()[0].token_count == all.size() ? store.entries()[0] : store.entries()[1];
  flip_byte(dir_ / longer.name, fs::file_size(dir_ / longer.name) - 100);
  std::unique_ptr<engine::Session> s = engine_->new_session();
  EXPECT_EQ(store.restore(text_of(all), *s), text_of(shorter).size());
  EXPECT_EQ(s->tokens(), shorter);
  EXPECT_EQ(metric(metrics, "magnetar_kv_disk_damaged_total"), 1);
  EXPECT_EQ(metric(metrics, "magnetar_kv_disk_hits_total"), 1);
}

TEST_F(DiskStateStoreTest, TheBudgetHoldsAfterManySaves) {
  const auto prefix = [](int i) { return testing::random_tokens(64, 100 + i); };
  uint64_t one_entry = 0;
  {
    Metrics metrics;
    DiskStateStore probe(options(), *engine_, nullptr, metrics);
    probe.save(SaveReason::kCold, *prefilled(*engine_, prefix(0)), text_of(prefix(0)),
               KeyKind::kTokenText);
    one_entry = probe.stats().bytes;
  }
  fs::remove_all(dir_);
  ASSERT_GT(one_entry, 0u);
  DiskStoreOptions o = options();
  o.budget_bytes = one_entry * 7 / 2;  // room for three entries of this size
  Metrics metrics;
  DiskStateStore store(o, *engine_, nullptr, metrics);
  constexpr int kSaves = 12;
  for (int i = 0; i < kSaves; ++i) {
    store.save(SaveReason::kCold, *prefilled(*engine_, prefix(i)), text_of(prefix(i)),
               KeyKind::kTokenText);
    EXPECT_LE(entry_bytes_on_disk(dir_), o.budget_bytes) << "after save " << i;
  }
  const uint64_t kept = store.stats().entries;
  EXPECT_GE(kept, 2u);
  EXPECT_LE(kept, 3u);
  EXPECT_EQ(metric(metrics, "magnetar_kv_disk_saves_total{reason=\"cold\"}"), kSaves);
  EXPECT_EQ(metric(metrics, "magnetar_kv_disk_evictions_total"),
            static_cast<double>(kSaves - kept));
  EXPECT_EQ(metric(metrics, "magnetar_kv_disk_bytes"),
            static_cast<double>(entry_bytes_on_disk(dir_)));
  EXPECT_EQ(metric(metrics, "magnetar_kv_disk_budget_bytes"), static_cast<double>(o.budget_bytes));
}

TEST_F(DiskStateStoreTest, AnotherModelsEntriesAreNeverLoaded) {
  const std::vector<int32_t> prefix = testing::random_tokens(100, 9);
  const std::string text = other_->tokenizer().decode(prefix);
  {
    Metrics metrics;
    DiskStateStore store(options(), *other_, nullptr, metrics);
    store.save(SaveReason::kEvict, *prefilled(*other_, prefix), text, KeyKind::kTokenText);
    ASSERT_EQ(store.stats().entries, 1u);
  }
  Metrics metrics;
  ::testing::internal::CaptureStderr();
  DiskStateStore store(options(), *engine_, nullptr, metrics);
  std::unique_ptr<engine::Session> s = engine_->new_session();
  EXPECT_EQ(store.restore(text, *s), std::nullopt);
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(s->processed(), 0);
  EXPECT_EQ(store.stats().entries, 0u);
  EXPECT_EQ(store.stats().unusable_files, 1u) << "kept, counted against the budget";
  EXPECT_NE(log.find("kv cache: unusable "), std::string::npos) << log;
  EXPECT_EQ(metric(metrics, "magnetar_kv_disk_misses_total"), 1);
}

TEST_F(DiskStateStoreTest, FailedSavesAreLoggedAndCounted) {
  const std::vector<int32_t> prefix = testing::random_tokens(100, 10);
  std::unique_ptr<engine::Session> s = prefilled(*engine_, prefix);
  {
    DiskStoreOptions o = options();
    o.budget_bytes = 4096;  // smaller than any entry
    Metrics metrics;
    DiskStateStore store(o, *engine_, nullptr, metrics);
    ::testing::internal::CaptureStderr();
    store.save(SaveReason::kCold, *s, text_of(prefix), KeyKind::kTokenText);
    const std::string log = ::testing::internal::GetCapturedStderr();
    EXPECT_NE(log.find("cold checkpoint of 100 tokens not saved"), std::string::npos) << log;
    EXPECT_EQ(metric(metrics, "magnetar_kv_disk_save_failures_total"), 1);
    EXPECT_EQ(store.stats().entries, 0u);
  }
  fs::remove_all(dir_);
  // The directory disappears under a running server (and a file takes its name): the write fails.
  Metrics metrics;
  DiskStateStore store(options(), *engine_, nullptr, metrics);
  fs::remove_all(dir_);
  std::ofstream(dir_) << "not a directory";
  ::testing::internal::CaptureStderr();
  store.save(SaveReason::kEvict, *s, text_of(prefix), KeyKind::kTokenText);
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(log.find("kv cache: evict save failed: kv cache: cannot store an entry of 100 tokens"),
            std::string::npos)
      << log;
  EXPECT_EQ(metric(metrics, "magnetar_kv_disk_save_failures_total"), 1);
  EXPECT_EQ(metric(metrics, "magnetar_kv_disk_saves_total{reason=\"evict\"}"), 0);
  std::unique_ptr<engine::Session> fresh = engine_->new_session();
  EXPECT_EQ(store.restore(text_of(prefix), *fresh), std::nullopt);
  fs::remove(dir_);
}

TEST_F(DiskStateStoreTest, StatesShorterThanTheMinimumAreNeitherSavedNorLoaded) {
  const std::vector<int32_t> prefix = testing::random_tokens(40, 11);
  Metrics metrics;
  DiskStateStore store(options(/*min_tokens=*/50), *engine_, nullptr, metrics);
  store.save(SaveReason::kEvict, *prefilled(*engine_, prefix), text_of(prefix),
             KeyKind::kTokenText);
  EXPECT_EQ(store.stats().entries, 0u);
  EXPECT_EQ(metric(metrics, "magnetar_kv_disk_saves_total{reason=\"evict\"}"), 0);
}

TEST_F(DiskStateStoreTest, RecallsToolIdsFromEveryEntry) {
  const std::string block = "[[the block of a tool call]]";
  std::vector<int32_t> prefix = testing::random_tokens(30, 12);
  std::vector<int32_t> block_tokens = engine_->tokenizer().encode(block);
  prefix.insert(prefix.end(), block_tokens.begin(), block_tokens.end());
  {
    kvcache::ToolIdMap tools;
    tools.remember(std::vector<std::string>{"call_a"}, block);
    Metrics metrics;
    DiskStateStore store(options(), *engine_, &tools, metrics);
    store.save(SaveReason::kEvict, *prefilled(*engine_, prefix), text_of(prefix),
               KeyKind::kTokenText);
  }
  kvcache::ToolIdMap tools;
  Metrics metrics;
  DiskStateStore store(options(), *engine_, &tools, metrics);
  store.recall_tool_ids({"call_a", "call_unknown"});
  EXPECT_EQ(tools.find("call_a"), block);
  EXPECT_FALSE(tools.contains("call_unknown"));
  EXPECT_EQ(tools.size(), 1u);
}

TEST_F(DiskStateStoreTest, SavePointsFollowThePolicy) {
  DiskStoreOptions o = options(/*min_tokens=*/200);
  o.checkpoints.continued_interval_tokens = 100;
  o.checkpoints.boundary_align_tokens = 64;  // step: 100 rounded up to 128
  o.checkpoints.boundary_trim_tokens = 32;
  o.checkpoints.cold_max_tokens = 5000;
  Metrics metrics;
  DiskStateStore store(o, *engine_, nullptr, metrics);
  EXPECT_EQ(store.continued_save_point(0), 256) << "128 is below the minimum";
  EXPECT_EQ(store.continued_save_point(255), 256);
  EXPECT_EQ(store.continued_save_point(256), 384);
  EXPECT_EQ(store.continued_save_point(300), 384);

  const tokenizer::Tokenizer& tok = engine_->tokenizer();
  const int32_t user = *tok.token_id(chat::kUser), assistant = *tok.token_id(chat::kAssistant);
  // A long system prompt, then the user turn: the checkpoint ends before the user token.
  std::vector<int32_t> prompt = testing::random_tokens(300, 13);
  prompt.push_back(user);
  for (int32_t t : testing::random_tokens(20, 14)) prompt.push_back(t);
  prompt.push_back(assistant);
  EXPECT_EQ(store.cold_save_point(prompt), 300);
  // No assistant token: the prompt less the trim, aligned down: 400 - 32 = 368 → 320.
  EXPECT_EQ(store.cold_save_point(testing::random_tokens(400, 15)), 320);
  EXPECT_EQ(store.cold_save_point(testing::random_tokens(199, 15)), std::nullopt) << "below min";
  EXPECT_EQ(store.cold_save_point(testing::random_tokens(5001, 15)), std::nullopt)
      << "above cold max";
  o.checkpoints.continued_interval_tokens = 0;
  fs::remove_all(dir_);
  DiskStateStore off(o, *engine_, nullptr, metrics);
  EXPECT_EQ(off.continued_save_point(0), std::nullopt);
}

TEST_F(DiskStateStoreTest, InconsistentOptionsAndUnusableDirectoriesAreRefused) {
  Metrics metrics;
  auto open = [&](const DiskStoreOptions& o) {
    DiskStateStore store(o, *engine_, nullptr, metrics);
  };
  DiskStoreOptions o = options(/*min_tokens=*/100);
  o.checkpoints.cold_max_tokens = 50;
  EXPECT_THROW(open(o), std::invalid_argument);
  DiskStateStore first(options(), *engine_, nullptr, metrics);
  try {
    DiskStateStore second(options(), *engine_, nullptr, metrics);
    FAIL() << "two stores share a directory";
  } catch (const kvcache::KvCacheError& e) {
    EXPECT_NE(std::string(e.what()).find("in use by another process"), std::string::npos);
  }
  std::ofstream(dir_ / "file") << "x";
  o = options();
  o.dir = dir_ / "file";
  EXPECT_THROW(open(o), kvcache::KvCacheError);
}

// The scheduler with a disk store: a conversation saved at shutdown is restored by a new
// scheduler (a restart); with that file damaged, the next restart falls back to the cold
// checkpoint of the prompt's stable part and still answers.
TEST_F(DiskStateStoreTest, TheSchedulerSavesAndRestoresThroughIt) {
  ApiContext api;
  api.tokenizer = &engine_->tokenizer();
  api.context = engine_->context();
  api.default_max_tokens = 16;
  api.max_tokens_limit = 64;
  api.models.id = "deepseek-v4-flash";
  std::string system;
  for (int i = 0; i < 40; ++i) system += "Rule " + std::to_string(i) + ": be precise and brief. ";
  const Json first = {{"messages",
                       {{{"role", "system"}, {"content", system}},
                        {{"role", "user"}, {"content", "What is a prime number?"}}}},
                      {"think", false}};
  Json second = first;
  second["messages"].push_back({{"role", "assistant"}, {"content", "A number with two divisors."}});
  second["messages"].push_back({{"role", "user"}, {"content", "And 7?"}});
  auto job = [&](const Json& body, const std::string& forced) {
    JobRequest r = prepare_chat_completion(body, api).job;
    r.forced_tokens = engine_->tokenizer().encode(forced, /*allow_special=*/true);
    return std::make_shared<Job>(std::move(r));
  };
  auto run = [&](Scheduler& s, std::shared_ptr<Job> j) {
    EXPECT_EQ(s.submit(j), Scheduler::Submit::kQueued);
    std::optional<Event> started;
    const auto deadline = std::chrono::steady_clock::now() + 120s;
    while (std::chrono::steady_clock::now() < deadline) {
      std::optional<Event> e = j->events.pop(100ms);
      if (e && e->kind == Event::Kind::kStarted) started = e;
      if (e && e->kind == Event::Kind::kDone) {
        EXPECT_TRUE(started);
        return std::make_pair(started ? started->usage.cached_tokens : -1, e->result->content);
      }
      if (e && e->kind == Event::Kind::kFailed) break;
    }
    ADD_FAILURE() << "the job did not finish";
    return std::make_pair(int64_t{-1}, std::string());
  };
  const DiskStoreOptions o = options(/*min_tokens=*/64);
  const SchedulerOptions so{.parallel = 1, .max_queue = 4, .chunk = 64};
  int64_t system_tokens = 0, first_live = 0;
  {
    kvcache::ToolIdMap tools;
    Metrics metrics;
    DiskStateStore store(o, *engine_, &tools, metrics);
    Scheduler s(*engine_, so, store, tools, metrics);
    auto a = job(first, "A number with two divisors.");
    const std::vector<int32_t> prompt = a->request.prompt_tokens;
    system_tokens = *store.cold_save_point(prompt);
    first_live =
        static_cast<int64_t>(prompt.size()) +
        static_cast<int64_t>(engine_->tokenizer().encode("A number with two divisors.").size());
    EXPECT_EQ(run(s, a), std::make_pair(int64_t{0}, std::string("A number with two divisors.")));
    EXPECT_EQ(metric(metrics, "magnetar_kv_disk_saves_total{reason=\"cold\"}"), 1);
    s.shutdown();
    EXPECT_EQ(metric(metrics, "magnetar_kv_disk_saves_total{reason=\"shutdown\"}"), 1);
  }
  ASSERT_GT(system_tokens, 64);
  std::string shutdown_entry;
  {
    kvcache::ToolIdMap tools;
    Metrics metrics;
    DiskStateStore store(o, *engine_, &tools, metrics);
    for (const kvcache::EntryInfo& e : store.entries()) {
      if (e.reason == SaveReason::kShutdown) shutdown_entry = e.name;
    }
    Scheduler s(*engine_, so, store, tools, metrics);
    EXPECT_EQ(run(s, job(second, "Prime.")), std::make_pair(first_live, std::string("Prime.")));
    EXPECT_EQ(metric(metrics, "magnetar_kv_disk_hits_total"), 1);
    EXPECT_EQ(metric(metrics, "magnetar_cache_placements_total{source=\"stored\"}"), 1);
  }
  ASSERT_FALSE(shutdown_entry.empty());
  flip_byte(dir_ / shutdown_entry, fs::file_size(dir_ / shutdown_entry) / 2);
  kvcache::ToolIdMap tools;
  Metrics metrics;
  DiskStateStore store(o, *engine_, &tools, metrics);
  Scheduler s(*engine_, so, store, tools, metrics);
  EXPECT_EQ(run(s, job(second, "Prime.")), std::make_pair(system_tokens, std::string("Prime.")));
  EXPECT_EQ(metric(metrics, "magnetar_kv_disk_damaged_total"), 1);
  EXPECT_FALSE(fs::exists(dir_ / shutdown_entry));
}

}  // namespace
}  // namespace magnetar::server
