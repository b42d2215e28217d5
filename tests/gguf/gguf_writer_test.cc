// The writer: byte-exact headers (compared with hand-assembled images), parallel round trips, and
// failures that leave nothing behind.
#include "gguf/gguf_writer.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "gguf_corpus.h"
#include "scratch_dir.h"

namespace magnetar::gguf {
namespace {

namespace fs = std::filesystem;
using quant::GgmlType;

fs::path scratch_dir() { return testing::scratch_dir("gguf_writer"); }

std::vector<uint8_t> read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

// The metadata and tensors of testing::small_valid_image(), built through the public API.
GgufMetadata small_metadata() {
  GgufMetadata m;
  m.set("general.architecture", GgufValue::string("test"));
  m.set("general.alignment", GgufValue::u32(32));
  m.set("t.u8", GgufValue::u8(200));
  m.set("t.i8", GgufValue::i8(-100));
  m.set("t.u16", GgufValue::u16(60000));
  m.set("t.i16", GgufValue::i16(-30000));
  m.set("t.u32", GgufValue::u32(4000000000u));
  m.set("t.i32", GgufValue::i32(-2000000000));
  m.set("t.f32", GgufValue::f32(1.5f));
  m.set("t.bool", GgufValue::boolean(true));
  m.set("t.u64", GgufValue::u64(1ull << 60));
  m.set("t.i64", GgufValue::i64(-(1ll << 60)));
  m.set("t.f64", GgufValue::f64(-2.25));
  m.set("t.strings", GgufValue::string_array({"a", "", "\xC4\xA0t"}));
  m.set("t.nested", GgufValue::nested_array(GgufType::kArray, {GgufValue::u32_array({7, 8}),
                                                               GgufValue::i32_array({-9})}));
  return m;
}

const std::vector<TensorSpec> kSmallTensors = {
    {"a", GgmlType::kF32, {8, 2}}, {"b", GgmlType::kQ8_0, {64}}, {"c", GgmlType::kI32, {4}}};

TEST(GgufWriter, HeaderMatchesHandAssembledImage) {
  std::vector<uint8_t> expected = testing::small_valid_image().encode();
  EncodedHeader h = encode_header(small_metadata(), kSmallTensors);
  ASSERT_EQ(h.bytes.size() + 192, expected.size());
  EXPECT_TRUE(std::equal(h.bytes.begin(), h.bytes.end(), expected.begin()));
  EXPECT_EQ(h.tensors[1].offset, 64u);
  EXPECT_EQ(h.tensors[2].offset, 160u);
  EXPECT_EQ(h.file_size, expected.size());
}

TEST(GgufWriter, ParallelRoundTrip) {
  fs::path path = scratch_dir() / "roundtrip.gguf";
  GgufMetadata meta = small_metadata();
  std::vector<TensorSpec> specs;
  std::mt19937 rng(7);
  for (int i = 0; i < 40; ++i) {
    int64_t rows = 1 + static_cast<int64_t>(rng() % 50);
    GgmlType type = i % 3 == 0 ? GgmlType::kQ8_0 : (i % 3 == 1 ? GgmlType::kF16 : GgmlType::kF32);
    specs.push_back({"t" + std::to_string(i), type, {64, rows}});
  }
  std::vector<std::vector<uint8_t>> payload;
  {
    GgufWriter w(path, meta, specs);
    for (const TensorInfo& t : w.tensors()) {
      std::vector<uint8_t> bytes(t.size);
      for (auto& b : bytes) b = static_cast<uint8_t>(rng());
      payload.push_back(bytes);
    }
    // Each tensor written in three pieces by four threads, in scrambled order.
    std::vector<std::thread> threads;
    for (int k = 0; k < 4; ++k) {
      threads.emplace_back([&, k] {
        for (size_t i = k; i < payload.size(); i += 4) {
          const std::vector<uint8_t>& p = payload[i];
          size_t a = p.size() / 3, b = 2 * p.size() / 3;
          w.write(i, b, std::span(p).subspan(b));
          w.write(i, 0, std::span(p).subspan(0, a));
          w.write(i, a, std::span(p).subspan(a, b - a));
        }
      });
    }
    for (auto& t : threads) t.join();
    w.commit();
  }
  EXPECT_FALSE(fs::exists(path.string() + ".partial"));
  GgufFile f = GgufFile::open(path);
  ASSERT_EQ(f.metadata().size(), meta.size());
  for (size_t i = 0; i < meta.size(); ++i) {
    EXPECT_EQ(f.metadata().entries()[i].first, meta.entries()[i].first);
    EXPECT_TRUE(f.metadata().entries()[i].second == meta.entries()[i].second)
        << meta.entries()[i].first;
  }
  ASSERT_EQ(f.tensors().size(), specs.size());
  uint64_t expected_size = f.data_offset();
  for (size_t i = 0; i < specs.size(); ++i) {
    const TensorInfo& t = f.tensors()[i];
    EXPECT_EQ(t.name, specs[i].name);
    EXPECT_EQ(t.ne, specs[i].ne);
    EXPECT_EQ(t.offset + f.data_offset(), expected_size);
    auto data = f.tensor_data(t);
    EXPECT_TRUE(std::equal(data.begin(), data.end(), payload[i].begin()));
    expected_size += (t.size + 31) / 32 * 32;
  }
  // file_size = DATA_POS + Σ align_up(size, 32), padding included after the last tensor.
  EXPECT_EQ(f.file_size(), expected_size);
  const TensorInfo& last = f.tensors().back();
  for (uint64_t p = f.data_offset() + last.offset + last.size; p < f.file_size(); ++p) {
    EXPECT_EQ(f.bytes()[p], 0) << "padding byte " << p;
  }
}

TEST(GgufWriter, IncompleteTensorIsNotCommitted) {
  fs::path path = scratch_dir() / "incomplete.gguf";
  fs::remove(path);
  {
    GgufWriter w(path, small_metadata(), kSmallTensors);
    std::vector<uint8_t> a(64, 1), b(68, 2), c(15, 3);  // c is one byte short
    w.write(0, 0, a);
    w.write(1, 0, b);
    w.write(2, 0, c);
    try {
      w.commit();
      ADD_FAILURE() << "commit accepted an incomplete tensor";
    } catch (const GgufError& e) {
      EXPECT_NE(std::string(e.what()).find("tensor c got 15 of its 16 bytes"), std::string::npos)
          << e.what();
    }
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path.string() + ".partial"));
}

TEST(GgufWriter, FailureKeepsTheExistingFile) {
  fs::path path = scratch_dir() / "existing.gguf";
  { std::ofstream(path) << "precious"; }
  {
    GgufWriter w(path, small_metadata(), kSmallTensors);
    EXPECT_THROW(w.write(0, 60, std::vector<uint8_t>(8, 0)), GgufError) << "overflowing write";
    EXPECT_THROW(w.write(9, 0, std::vector<uint8_t>(1, 0)), GgufError) << "no such tensor";
  }  // abandoned without commit
  std::vector<uint8_t> kept = read_all(path);
  EXPECT_EQ(std::string(kept.begin(), kept.end()), "precious");
  EXPECT_FALSE(fs::exists(path.string() + ".partial"));
}

TEST(GgufWriter, RefusesFilesLargerThanTheFreeSpace) {
  fs::path path = scratch_dir() / "huge.gguf";
  std::vector<TensorSpec> huge = {{"w", GgmlType::kF32, {1 << 20, int64_t{1} << 30}}};  // 4 PiB
  try {
    GgufWriter w(path, small_metadata(), huge);
    ADD_FAILURE() << "accepted a 4 PiB file";
  } catch (const GgufError& e) {
    EXPECT_NE(std::string(e.what()).find("not enough free space"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(path.string() + ".partial"));
}

// A file-size limit makes the kernel refuse to grow the file, as a full disk would: the writer
// must report it and remove its partial file. Runs in a child so the limit stays there.
TEST(GgufWriter, WriteErrorsAreReportedAndCleanedUp) {
  fs::path path = scratch_dir() / "limited.gguf";
  fs::remove(path);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = {100, 100};
    setrlimit(RLIMIT_FSIZE, &lim);
    try {
      GgufWriter w(path, small_metadata(), kSmallTensors);
      _exit(3);
    } catch (const GgufError& e) {
      bool named = std::string(e.what()).find(path.string()) != std::string::npos;
      _exit(fs::exists(path.string() + ".partial") ? 4 : (named ? 0 : 5));
    }
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "3: no error, 4: partial file left, 5: message lacks path";
  EXPECT_FALSE(fs::exists(path));
}

TEST(GgufWriter, RejectsSpecsThatCannotBeEncoded) {
  GgufMetadata m;
  EXPECT_THROW(encode_header(m, {{"x", GgmlType::kQ8_0, {33}}}), GgufError);
  EXPECT_THROW(encode_header(m, {{"x", GgmlType::kF32, {1, 1, 1, 1, 1}}}), GgufError);
  EXPECT_THROW(encode_header(m, {{"x", GgmlType::kF32, {1}}, {"x", GgmlType::kF32, {1}}}),
               GgufError);
  m.set("general.alignment", GgufValue::u32(24));
  EXPECT_THROW(encode_header(m, {}), GgufError);
}

}  // namespace
}  // namespace magnetar::gguf
