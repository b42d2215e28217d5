// Shared pieces of the disk cache tests: a fresh directory per test, a report collector, random
// payloads and token lists, and the files a directory holds.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "kvcache/disk_kv_cache.h"
#include "scratch_dir.h"

namespace magnetar::kvcache {

inline ModelIdentity identity(uint8_t seed) {
  ModelIdentity id;
  for (size_t i = 0; i < id.size(); ++i) id[i] = static_cast<uint8_t>(seed * 31 + i);
  return id;
}

inline std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> b(n);
  for (uint8_t& x : b) x = static_cast<uint8_t>(rng());
  return b;
}

inline std::vector<int32_t> token_range(int32_t first, size_t n) {
  std::vector<int32_t> t(n);
  for (size_t i = 0; i < n; ++i) t[i] = first + static_cast<int32_t>(i);
  return t;
}

inline std::string text_of(std::span<const int32_t> tokens) {
  std::string s;
  for (int32_t t : tokens) s += "<" + std::to_string(t) + ">";
  return s;
}

// The regular files of a directory, name → size.
inline std::map<std::string, uint64_t> files_in(const std::filesystem::path& dir) {
  std::map<std::string, uint64_t> out;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.is_regular_file()) out[e.path().filename().string()] = e.file_size();
  return out;
}

inline uint64_t entry_bytes_on_disk(const std::filesystem::path& dir) {
  uint64_t total = 0;
  for (const auto& [name, size] : files_in(dir))
    if (name.ends_with(".mkv")) total += size;
  return total;
}

inline std::vector<uint8_t> read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline void write_bytes(const std::filesystem::path& path, std::span<const uint8_t> bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

class CacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = testing::scratch_dir("kvcache") /
           (std::string(info->test_suite_name()) + "." + info->name());
    std::filesystem::remove_all(dir_);
  }

  CacheOptions options(uint64_t budget = 1 << 30, ModelIdentity model = identity(1)) {
    return {.dir = dir_,
            .budget_bytes = budget,
            .model = model,
            .report =
                [this](const CacheReport& r) {
                  std::lock_guard lock(reports_mu_);
                  reports_.push_back(r);
                },
            .clock = [this] { return clock_.load(); }};
  }

  // Reports of `kind` about `file` so far.
  int count_reports(CacheReport::Kind kind, const std::string& file = "") {
    std::lock_guard lock(reports_mu_);
    int n = 0;
    for (const CacheReport& r : reports_) n += r.kind == kind && (file.empty() || r.file == file);
    return n;
  }
  std::string all_reports() {
    std::lock_guard lock(reports_mu_);
    std::string s;
    for (const CacheReport& r : reports_) s += r.file + ": " + r.message + "\n";
    return s;
  }

  StoreResult store(DiskKvCache& cache, std::span<const int32_t> tokens, size_t payload_bytes,
                    SaveReason reason = SaveReason::kCold,
                    std::span<const ToolCallRecord> tools = {}) {
    std::string text = text_of(tokens);
    std::vector<uint8_t> payload = random_bytes(payload_bytes, static_cast<uint32_t>(tokens[0]));
    return cache.store({.tokens = tokens,
                        .key_text = text,
                        .payload = payload,
                        .tool_calls = tools,
                        .reason = reason});
  }

  std::filesystem::path dir_;
  std::atomic<int64_t> clock_{1767225600};
  std::mutex reports_mu_;
  std::vector<CacheReport> reports_;
};

}  // namespace magnetar::kvcache
