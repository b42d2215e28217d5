// DiskKvCache: round trip, restart, lookups, damaged and foreign files, a full disk, the directory
// lock, and concurrent use.
#include "kvcache/disk_kv_cache.h"

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <iostream>
#include <optional>
#include <thread>

#include "cache_fixture.h"

namespace magnetar::kvcache {
namespace {

namespace fs = std::filesystem;
using Status = StoreResult::Status;

using DiskCache = CacheTest;

TEST_F(DiskCache, RoundTripsAnEntry) {
  DiskKvCache cache(options());
  const std::vector<int32_t> tokens = token_range(100, 700);
  const std::string text = text_of(tokens);
  const std::vector<uint8_t> payload = random_bytes(123457, 9);
  const std::vector<ToolCallRecord> tools = {
      {"call_1", "<dsml one>"}, {"call_2", "<dsml one>"}, {"call_3", "<dsml two>"}};
  StoreResult r = cache.store({.tokens = tokens,
                               .key_text = text,
                               .payload = payload,
                               .tool_calls = tools,
                               .reason = SaveReason::kContinued});
  ASSERT_EQ(r.status, Status::kWritten);
  EXPECT_EQ(r.entry.token_count, 700u);
  EXPECT_EQ(r.entry.file_bytes, fs::file_size(dir_ / r.entry.name));
  EXPECT_EQ(fs::status(dir_ / r.entry.name).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);

  std::vector<int32_t> longer = tokens;
  longer.push_back(5);
  std::optional<EntryInfo> hit = cache.lookup(longer);
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->name, r.entry.name);
  clock_ += 100;
  LoadedEntry e = cache.load(*hit);
  EXPECT_EQ(e.tokens, tokens);
  EXPECT_EQ(e.key_text, text);
  EXPECT_EQ(e.payload, payload);
  EXPECT_EQ(e.tool_calls, tools);
  EXPECT_EQ(e.info.reason, SaveReason::kContinued);
  EXPECT_EQ(e.info.hits, 1u);
  EXPECT_EQ(e.info.last_used, clock_.load());
  EXPECT_EQ(cache.entries().at(0).hits, 1u);
  CacheStats s = cache.stats();
  EXPECT_EQ(s.loads, 1u);
  EXPECT_EQ(s.stores, 1u);
  EXPECT_EQ(s.bytes, r.bytes);
  EXPECT_EQ(count_reports(CacheReport::Kind::kDamaged), 0);
}

TEST_F(DiskCache, ARestartFindsEntriesHitsAndToolCalls) {
  const std::vector<int32_t> tokens = token_range(1, 600);
  const std::vector<ToolCallRecord> tools = {{"call_a", "<block a>"}, {"call_b", "<block b>"}};
  std::string name;
  {
    DiskKvCache cache(options());
    name = store(cache, tokens, 5000, SaveReason::kEvict, tools).entry.name;
    cache.load(*cache.lookup(tokens));
    cache.load(*cache.lookup(tokens));
  }
  clock_ += 3600;
  DiskKvCache cache(options());
  ASSERT_EQ(cache.entries().size(), 1u);
  EntryInfo info = cache.entries()[0];
  EXPECT_EQ(info.name, name);
  EXPECT_EQ(info.hits, 2u) << "hit counts persist";
  EXPECT_EQ(info.reason, SaveReason::kEvict);
  EXPECT_EQ(info.tool_calls, 2u);
  EXPECT_EQ(cache.lookup_text(text_of(tokens) + "more")->name, name);
  std::vector<std::string> wanted = {"call_b", "call_unknown"};
  EXPECT_EQ(cache.find_tool_calls(wanted), (std::vector<ToolCallRecord>{{"call_b", "<block b>"}}));
  EXPECT_EQ(cache.load(info).payload, random_bytes(5000, 1));
}

TEST_F(DiskCache, LookupsPickTheLongestPrefix) {
  DiskKvCache cache(options());
  const std::vector<int32_t> all = token_range(1, 900);
  auto prefix = [&](size_t n) { return std::vector<int32_t>(all.begin(), all.begin() + n); };
  store(cache, prefix(300), 100);
  store(cache, prefix(600), 100);
  store(cache, token_range(5000, 700), 100);  // not a prefix
  EXPECT_EQ(cache.lookup(all)->token_count, 600u);
  EXPECT_EQ(cache.lookup(prefix(599))->token_count, 300u);
  EXPECT_EQ(cache.lookup(prefix(600))->token_count, 600u) << "a whole request is a prefix too";
  EXPECT_FALSE(cache.lookup(prefix(299)).has_value());
  EXPECT_FALSE(cache.lookup(token_range(2, 900)).has_value());

  const std::string text = text_of(all);
  EXPECT_EQ(cache.lookup_text(text)->token_count, 600u);
  EXPECT_EQ(cache.lookup_text(text_of(prefix(450)))->token_count, 300u);
  EXPECT_FALSE(cache.lookup_text("<2><3>").has_value());
  EXPECT_EQ(cache.stats().lookups, 8u);
  EXPECT_EQ(cache.stats().lookup_hits, 5u);

  // A visible transcript key: the same text with different (hidden-reasoning) tokens; the newest
  // wins a text tie.
  clock_ += 10;
  const std::vector<int32_t> hidden = token_range(70000, 650);
  const std::vector<uint8_t> payload(10, 1);
  const std::string visible = text_of(prefix(600));
  ASSERT_EQ(cache
                .store({.tokens = hidden,
                        .key_text = visible,
                        .payload = payload,
                        .reason = SaveReason::kEvict,
                        .key_kind = KeyKind::kThinkingVisible})
                .status,
            Status::kWritten);
  std::optional<EntryInfo> hit = cache.lookup_text(text);
  EXPECT_EQ(hit->token_count, 650u);
  EXPECT_EQ(hit->key_kind, KeyKind::kThinkingVisible);
  EXPECT_EQ(cache.load(*hit).tokens, hidden);
}

TEST_F(DiskCache, StoringAnIdenticalEntryKeepsItUnlessToolCallsAreNew) {
  DiskKvCache cache(options());
  const std::vector<int32_t> tokens = token_range(1, 600);
  std::vector<ToolCallRecord> first = {{"call_a", "<a>"}};
  StoreResult r1 = store(cache, tokens, 1000, SaveReason::kCold, first);
  ASSERT_EQ(r1.status, Status::kWritten);
  cache.load(*cache.lookup(tokens));
  clock_ += 50;
  StoreResult r2 = store(cache, tokens, 1000, SaveReason::kEvict, first);
  EXPECT_EQ(r2.status, Status::kAlreadyCached);
  EXPECT_EQ(r2.entry.last_used, clock_.load()) << "last use refreshed";
  EXPECT_TRUE(cache.contains(tokens, text_of(tokens)));

  std::vector<ToolCallRecord> second = {{"call_b", "<b>"}};
  StoreResult r3 = store(cache, tokens, 1000, SaveReason::kEvict, second);
  EXPECT_EQ(r3.status, Status::kWritten);
  EXPECT_EQ(r3.entry.hits, 1u) << "the hit count carries over";
  LoadedEntry e = cache.load(*cache.lookup(tokens));
  EXPECT_EQ(e.tool_calls, (std::vector<ToolCallRecord>{{"call_a", "<a>"}, {"call_b", "<b>"}}));
  EXPECT_EQ(cache.entries().size(), 1u);
  EXPECT_EQ(files_in(dir_).size(), 2u) << "one entry and the lock file";
}

TEST_F(DiskCache, RefusesEmptyStores) {
  DiskKvCache cache(options());
  const std::vector<int32_t> tokens = {1, 2};
  const std::vector<uint8_t> payload = {1};
  EXPECT_THROW(cache.store({.tokens = {}, .key_text = "x", .payload = payload}), KvCacheError);
  EXPECT_THROW(cache.store({.tokens = tokens, .key_text = "", .payload = payload}), KvCacheError);
  EXPECT_THROW(cache.store({.tokens = tokens, .key_text = "x", .payload = {}}), KvCacheError);
}

class DamagedFiles : public CacheTest {
 protected:
  // Writes one entry and returns its file.
  fs::path write_entry(ModelIdentity model = identity(1)) {
    DiskKvCache cache(options(1 << 30, model));
    return dir_ / store(cache, tokens_, 4000).entry.name;
  }
  void flip(const fs::path& path, size_t at) {
    std::vector<uint8_t> b = read_bytes(path);
    b.at(at) ^= 0x10;
    write_bytes(path, b);
  }
  const std::vector<int32_t> tokens_ = token_range(1, 600);
};

TEST_F(DamagedFiles, APayloadBitFlipIsRefusedOnLoadReportedAndDeleted) {
  fs::path path = write_entry();
  flip(path, fs::file_size(path) - 32 - 1000);  // inside the payload
  DiskKvCache cache(options());
  std::optional<EntryInfo> hit = cache.lookup(tokens_);
  ASSERT_TRUE(hit.has_value()) << "the header and metadata are intact, so it is indexed";
  try {
    cache.load(*hit);
    FAIL() << "a damaged payload was loaded";
  } catch (const KvCacheError& e) {
    EXPECT_NE(std::string(e.what()).find("checksum mismatch"), std::string::npos) << e.what();
  }
  EXPECT_EQ(count_reports(CacheReport::Kind::kDamaged, path.filename()), 1);
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(cache.lookup(tokens_).has_value());
  EXPECT_EQ(cache.stats().bytes, 0u);
  EXPECT_EQ(cache.stats().load_failures, 1u);
}

TEST_F(DamagedFiles, ADamagedFileFoundOnOpenIsReportedAndDeleted) {
  struct Case {
    const char* what;
    std::function<void(const fs::path&)> damage;
  };
  const std::vector<Case> cases = {
      {"key text bit flip", [&](const fs::path& p) { flip(p, 160 + 4 * 600 + 3); }},
      {"token bit flip", [&](const fs::path& p) { flip(p, 160 + 7); }},
      {"header bit flip", [&](const fs::path& p) { flip(p, 60); }},
      {"metadata checksum bit flip", [&](const fs::path& p) { flip(p, 100); }},
      {"truncated", [&](const fs::path& p) { fs::resize_file(p, fs::file_size(p) - 100); }},
      {"truncated to a few bytes", [&](const fs::path& p) { fs::resize_file(p, 20); }},
      {"empty", [&](const fs::path& p) { fs::resize_file(p, 0); }},
      {"extended", [&](const fs::path& p) { fs::resize_file(p, fs::file_size(p) + 1); }},
      {"garbage", [&](const fs::path& p) { write_bytes(p, random_bytes(fs::file_size(p), 4)); }},
      {"renamed",
       [&](const fs::path& p) { fs::rename(p, dir_ / (std::string(64, 'e') + ".mkv")); }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    fs::remove_all(dir_);
    reports_.clear();
    fs::path path = write_entry();
    c.damage(path);
    std::string name = fs::exists(path) ? path.filename().string() : std::string(64, 'e') + ".mkv";
    DiskKvCache cache(options());
    EXPECT_EQ(count_reports(CacheReport::Kind::kDamaged, name), 1) << all_reports();
    EXPECT_FALSE(fs::exists(dir_ / name));
    EXPECT_EQ(cache.stats().entries, 0u);
    EXPECT_EQ(cache.stats().bytes, 0u);
    EXPECT_FALSE(cache.lookup(tokens_).has_value());
  }
}

TEST_F(DamagedFiles, ATruncationAfterIndexingIsRefusedOnLoad) {
  fs::path path = write_entry();
  DiskKvCache cache(options());
  std::optional<EntryInfo> hit = cache.lookup(tokens_);
  ASSERT_TRUE(hit.has_value());
  fs::resize_file(path, fs::file_size(path) / 2);
  EXPECT_THROW(cache.load(*hit), KvCacheError);
  EXPECT_EQ(count_reports(CacheReport::Kind::kDamaged, path.filename()), 1) << all_reports();
  EXPECT_FALSE(cache.lookup(tokens_).has_value());
}

TEST_F(DamagedFiles, AnotherModelsOrVersionsFileIsReportedAndKept) {
  fs::path foreign = write_entry(identity(2));
  fs::path other_version;
  {
    // An entry of this model whose version field says 2 (a newer Magnetar's file).
    fs::path p = write_entry();
    std::vector<uint8_t> b = read_bytes(p);
    b[8] = 2;
    other_version = dir_ / (std::string(64, 'a') + ".mkv");
    write_bytes(other_version, b);
    fs::remove(p);
  }
  reports_.clear();
  DiskKvCache cache(options());
  EXPECT_EQ(count_reports(CacheReport::Kind::kUnusable, foreign.filename()), 1) << all_reports();
  EXPECT_EQ(count_reports(CacheReport::Kind::kUnusable, other_version.filename()), 1);
  EXPECT_TRUE(fs::exists(foreign));
  EXPECT_TRUE(fs::exists(other_version));
  EXPECT_FALSE(cache.lookup(tokens_).has_value());
  CacheStats s = cache.stats();
  EXPECT_EQ(s.entries, 0u);
  EXPECT_EQ(s.unusable_files, 2u);
  EXPECT_EQ(s.bytes, fs::file_size(foreign) + fs::file_size(other_version));
}

TEST_F(DamagedFiles, ATornUsageBlockOnlyResetsTheHitCount) {
  fs::path path = write_entry();
  {
    DiskKvCache cache(options());
    cache.load(*cache.lookup(tokens_));
  }
  flip(path, 130);
  DiskKvCache cache(options());
  EXPECT_EQ(count_reports(CacheReport::Kind::kWarning, path.filename()), 1);
  ASSERT_EQ(cache.entries().size(), 1u);
  EXPECT_EQ(cache.entries()[0].hits, 0u);
  EXPECT_EQ(cache.load(cache.entries()[0]).payload, random_bytes(4000, 1));
}

TEST_F(DamagedFiles, StaleTempFilesAreDeletedOtherFilesLeftAlone) {
  fs::path entry = write_entry();
  const std::string temp = entry.filename().string() + ".tmp.12345.0";
  write_bytes(dir_ / temp, random_bytes(5000, 1));
  write_bytes(dir_ / "notes.txt", random_bytes(10, 1));
  write_bytes(dir_ / "ABC.mkv", random_bytes(10, 1));
  DiskKvCache cache(options());
  EXPECT_EQ(count_reports(CacheReport::Kind::kStaleTemp, temp), 1);
  EXPECT_FALSE(fs::exists(dir_ / temp));
  EXPECT_TRUE(fs::exists(dir_ / "notes.txt"));
  EXPECT_TRUE(fs::exists(dir_ / "ABC.mkv"));
  EXPECT_EQ(reports_.size(), 1u) << all_reports();
  EXPECT_EQ(cache.stats().entries, 1u);
  EXPECT_EQ(cache.stats().bytes, fs::file_size(entry)) << "files that are not entries do not count";
}

// RLIMIT_FSIZE below the new entry's size makes write() fail with EFBIG (SIGXFSZ ignored), as a
// full disk makes it fail with ENOSPC: the store throws a clear error in a child process, and the
// parent then finds the old entry intact and no temp file left.
TEST_F(DiskCache, AFailedWriteLeavesTheCacheIntact) {
  const std::vector<int32_t> old_tokens = token_range(1, 600);
  std::string old_name;
  {
    DiskKvCache cache(options());
    old_name = store(cache, old_tokens, 50000).entry.name;
  }
  auto child = [&] {
    std::signal(SIGXFSZ, SIG_IGN);
    rlimit limit{100000, 100000};
    setrlimit(RLIMIT_FSIZE, &limit);
    DiskKvCache cache(options());
    try {
      store(cache, token_range(5000, 700), 500000);
    } catch (const KvCacheError& e) {
      std::cerr << e.what() << "\n";
      bool as_expected =
          e.sys_errno() == EFBIG && cache.stats().store_failures == 1 && cache.stats().entries == 1;
      // _exit: the child must not run the process's exit handlers, which delete the scratch dir.
      _exit(as_expected ? 0 : 1);
    }
    _exit(2);
  };
  EXPECT_EXIT(child(), ::testing::ExitedWithCode(0),
              "cannot store an entry of 700 tokens .* the file size limit was reached \\(EFBIG\\); "
              "existing entries are unchanged");
  DiskKvCache cache(options());
  EXPECT_EQ(cache.stats().entries, 1u);
  EXPECT_EQ(count_reports(CacheReport::Kind::kStaleTemp), 0) << "the failed write cleaned up";
  EXPECT_EQ(files_in(dir_).size(), 2u);
  EXPECT_EQ(cache.load(*cache.lookup(old_tokens)).payload, random_bytes(50000, 1));
  EXPECT_FALSE(cache.lookup(token_range(5000, 700)).has_value());
}

TEST(FileIo, NamesStorageErrorsInWords) {
  EXPECT_EQ(describe_errno(ENOSPC), "the disk is full (ENOSPC)");
  EXPECT_EQ(describe_errno(EFBIG), "the file size limit was reached (EFBIG)");
  EXPECT_EQ(describe_errno(EIO), "input/output error (EIO)");
  EXPECT_EQ(describe_errno(EDQUOT), "the disk quota is exhausted (EDQUOT)");
}

TEST_F(DiskCache, OneProcessOwnsADirectory) {
  std::optional<DiskKvCache> first(std::in_place, options());
  try {
    DiskKvCache second(options());
    FAIL() << "two caches share a directory";
  } catch (const KvCacheError& e) {
    EXPECT_NE(std::string(e.what()).find("in use by another process (pid " +
                                         std::to_string(::getpid()) + ")"),
              std::string::npos)
        << e.what();
  }
  first.reset();
  EXPECT_NO_THROW(DiskKvCache third(options()));
}

TEST_F(DiskCache, CreatesAPrivateDirectoryAndRefusesBadOptions) {
  CacheOptions o = options();
  o.dir = dir_ / "a" / "b";
  DiskKvCache cache(o);
  EXPECT_EQ(fs::status(o.dir).permissions() & fs::perms::all, fs::perms::owner_all);
  EXPECT_EQ(fs::status(dir_ / "a").permissions() & fs::perms::all, fs::perms::owner_all);

  write_bytes(dir_ / "file", random_bytes(3, 1));
  o.dir = dir_ / "file";
  EXPECT_THROW(DiskKvCache bad(o), KvCacheError);
  o.dir = dir_ / "file" / "sub";
  EXPECT_THROW(DiskKvCache bad(o), KvCacheError);
  o = options(0);
  EXPECT_THROW(DiskKvCache bad(o), KvCacheError);
  // A directory this process cannot write to (root writes anywhere, so only others can check it).
  if (::geteuid() != 0) {
    fs::create_directories(dir_ / "read-only");
    fs::permissions(dir_ / "read-only", fs::perms::owner_read | fs::perms::owner_exec);
    o = options();
    o.dir = dir_ / "read-only";
    EXPECT_THROW(
        {
          try {
            DiskKvCache bad(o);
          } catch (const KvCacheError& e) {
            EXPECT_NE(std::string(e.what()).find("is not writable"), std::string::npos);
            throw;
          }
        },
        KvCacheError);
    fs::permissions(dir_ / "read-only", fs::perms::owner_all);
  }

  fs::create_directories(dir_ / "shared");
  fs::permissions(dir_ / "shared", fs::perms::all);
  o = options();
  o.dir = dir_ / "shared";
  DiskKvCache shared(o);
  EXPECT_EQ(count_reports(CacheReport::Kind::kWarning), 1) << "a world-writable directory";
}

TEST_F(DiskCache, ErasedEntriesAreGone) {
  DiskKvCache cache(options());
  StoreResult r = store(cache, token_range(1, 600), 100);
  EntryInfo info = r.entry;
  EXPECT_TRUE(cache.erase(info.name));
  EXPECT_FALSE(cache.erase(info.name));
  EXPECT_FALSE(fs::exists(dir_ / info.name));
  try {
    cache.load(info);
    FAIL();
  } catch (const KvCacheError& e) {
    EXPECT_NE(std::string(e.what()).find("no longer in the cache"), std::string::npos);
  }
}

// One thread stores under a tight budget (evicting), others look up, load and read stats: no
// damaged file is ever seen, every load returns what was stored, and the accounting matches the
// disk at the end.
TEST_F(DiskCache, ConcurrentUseIsConsistent) {
  DiskKvCache cache(options(8 * 40000));
  std::atomic<bool> done{false};
  std::atomic<int> loads{0}, gone{0}, wrong{0};
  std::thread writer([&] {
    for (int i = 0; i < 60; ++i) {
      clock_ += 1;
      store(cache, token_range(1000 * (i + 1), 600), 30000 + 10 * i);
    }
    done = true;
  });
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t)
    readers.emplace_back([&] {
      while (!done) {
        for (const EntryInfo& info : cache.entries()) {
          try {
            LoadedEntry e = cache.load(info);
            int32_t first = e.tokens.at(0);
            int i = first / 1000 - 1;
            if (e.payload != random_bytes(30000 + 10 * i, static_cast<uint32_t>(first))) ++wrong;
            ++loads;
          } catch (const KvCacheError&) {
            ++gone;  // evicted between entries() and load()
          }
        }
        (void)cache.stats();
        (void)cache.lookup(token_range(1000, 700));
      }
    });
  writer.join();
  for (std::thread& r : readers) r.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GT(loads.load(), 0);
  EXPECT_EQ(count_reports(CacheReport::Kind::kDamaged), 0) << all_reports();
  EXPECT_EQ(count_reports(CacheReport::Kind::kUnreadable), 0) << all_reports();
  CacheStats s = cache.stats();
  EXPECT_EQ(s.bytes, entry_bytes_on_disk(dir_));
  EXPECT_LE(s.bytes, 8u * 40000);
  EXPECT_EQ(s.stores, 60u);
}

}  // namespace
}  // namespace magnetar::kvcache
