// The entry file's byte layout, checked field by field against docs/kv-cache.md's table with an
// independent little-endian reader and OpenSSL's one-shot SHA-256.
#include "kvcache/entry_format.h"

#include <openssl/sha.h>

#include <cstring>

#include "cache_fixture.h"

namespace magnetar::kvcache {
namespace {

uint64_t le(const std::vector<uint8_t>& b, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | b[at + i];
  return v;
}

// SHA-256 of the concatenated parts, by OpenSSL's one-shot function.
std::vector<uint8_t> sha256_of(std::initializer_list<std::span<const uint8_t>> parts) {
  std::vector<uint8_t> all;
  for (auto p : parts) all.insert(all.end(), p.begin(), p.end());
  std::vector<uint8_t> d(SHA256_DIGEST_LENGTH);
  SHA256(all.data(), all.size(), d.data());
  return d;
}

using EntryFormat = CacheTest;

TEST_F(EntryFormat, FileMatchesTheDocumentedLayout) {
  DiskKvCache cache(options());
  const std::vector<int32_t> tokens = {5, 70000, 128803};
  const std::string text = "<｜User｜>hello";
  const std::vector<uint8_t> payload = random_bytes(1000, 3);
  const std::vector<ToolCallRecord> tools = {{"call_b", "DSML-1"}, {"call_a", "DSML-1"}};
  StoreResult r = cache.store({.tokens = tokens,
                               .key_text = text,
                               .payload = payload,
                               .tool_calls = tools,
                               .reason = SaveReason::kEvict,
                               .key_kind = KeyKind::kThinkingVisible});
  ASSERT_EQ(r.status, StoreResult::Status::kWritten);
  const std::vector<uint8_t> f = read_bytes(dir_ / r.entry.name);

  // Tool section: 1 block, "DSML-1", 2 ids (sorted: call_a, call_b).
  const size_t tool_bytes = 4 + (4 + 6) + 4 + 2 * (4 + 6);
  const size_t metadata = 4 * tokens.size() + text.size() + tool_bytes;
  ASSERT_EQ(f.size(), 160 + metadata + payload.size() + 32);
  EXPECT_EQ(r.bytes, f.size());
  EXPECT_EQ(std::string(f.begin(), f.begin() + 8), "MKVCACHE");
  EXPECT_EQ(le(f, 8, 4), 1u) << "format version";
  EXPECT_EQ(le(f, 12, 4), 3u) << "reason evict";
  EXPECT_EQ(le(f, 16, 4), 2u) << "key kind thinking-visible";
  EXPECT_EQ(le(f, 20, 4), 0u);
  EXPECT_TRUE(std::equal(f.begin() + 24, f.begin() + 56, identity(1).begin()));
  EXPECT_EQ(le(f, 56, 8), tokens.size());
  EXPECT_EQ(le(f, 64, 8), text.size());
  EXPECT_EQ(le(f, 72, 8), tool_bytes);
  EXPECT_EQ(le(f, 80, 8), payload.size());
  EXPECT_EQ(le(f, 88, 8), 1767225600u) << "created";
  EXPECT_EQ(le(f, 128, 8), 0u) << "hits";
  EXPECT_EQ(le(f, 136, 8), 1767225600u) << "last used";
  for (size_t i = 0; i < tokens.size(); ++i)
    EXPECT_EQ(le(f, 160 + 4 * i, 4), static_cast<uint32_t>(tokens[i]));
  const size_t text_at = 160 + 4 * tokens.size(), tool_at = text_at + text.size();
  EXPECT_EQ(std::string(f.begin() + text_at, f.begin() + tool_at), text);
  EXPECT_EQ(le(f, tool_at, 4), 1u) << "blocks";
  EXPECT_EQ(le(f, tool_at + 4, 4), 6u);
  EXPECT_EQ(std::string(f.begin() + tool_at + 8, f.begin() + tool_at + 14), "DSML-1");
  EXPECT_EQ(le(f, tool_at + 14, 4), 2u) << "ids";
  EXPECT_EQ(std::string(f.begin() + tool_at + 22, f.begin() + tool_at + 28), "call_a");
  EXPECT_TRUE(std::equal(payload.begin(), payload.end(), f.begin() + 160 + metadata));

  std::span<const uint8_t> all(f);
  EXPECT_EQ(sha256_of({all.first(96), all.subspan(160, metadata)}),
            std::vector<uint8_t>(f.begin() + 96, f.begin() + 128))
      << "metadata checksum";
  EXPECT_EQ(sha256_of({all.first(128), all.subspan(160, f.size() - 160 - 32)}),
            std::vector<uint8_t>(f.end() - 32, f.end()))
      << "whole-file checksum, usage block excluded";
  std::vector<uint8_t> usage_check = sha256_of({all.subspan(128, 24)});
  EXPECT_TRUE(std::equal(usage_check.begin(), usage_check.begin() + 8, f.begin() + 152));

  // The name: SHA-256 of identity, u64 token count, the tokens (i32 LE), the key text.
  std::vector<uint8_t> count(8, 0);
  count[0] = static_cast<uint8_t>(tokens.size());
  std::vector<uint8_t> token_bytes(f.begin() + 160, f.begin() + text_at);
  const ModelIdentity model = identity(1);
  std::span<const uint8_t> text_bytes(reinterpret_cast<const uint8_t*>(text.data()), text.size());
  EXPECT_EQ(r.entry.name, to_hex(sha256_of({model, count, token_bytes, text_bytes})) + ".mkv");
}

TEST(EntryName, RecognizesOnlyLowercaseHexNames) {
  const std::string hex64(64, 'a');
  EXPECT_TRUE(is_entry_name(hex64 + ".mkv"));
  EXPECT_FALSE(is_entry_name(std::string(64, 'A') + ".mkv"));
  EXPECT_FALSE(is_entry_name(hex64 + ".kv"));
  EXPECT_FALSE(is_entry_name(hex64.substr(1) + ".mkv"));
  EXPECT_FALSE(is_entry_name(hex64 + ".mkv.tmp.1.0"));
  EXPECT_FALSE(is_entry_name("magnetar-kvcache.lock"));
}

TEST(EntryHeader, DecodingRefusesImpossibleSizes) {
  EntryHeader h;
  h.model = identity(1);
  EntryMetadata m{{1, 2, 3}, "abc", {}};
  std::vector<uint8_t> head = encode_entry_head(h, {}, m, 10);
  const uint64_t size = h.file_bytes();
  EXPECT_NO_THROW(decode_header(head, identity(1), size));
  auto problem = [&](std::vector<uint8_t> bytes, uint64_t file_size, const ModelIdentity& id) {
    try {
      decode_header(bytes, id, file_size);
    } catch (const EntryFormatError& e) {
      return e.problem();
    }
    ADD_FAILURE() << "accepted";
    return Problem::kDamaged;
  };
  EXPECT_EQ(problem(head, size - 1, identity(1)), Problem::kDamaged) << "truncated";
  EXPECT_EQ(problem(head, size + 1, identity(1)), Problem::kDamaged) << "trailing bytes";
  EXPECT_EQ(problem(head, size, identity(2)), Problem::kOtherModel);
  std::vector<uint8_t> v2 = head;
  v2[8] = 2;
  EXPECT_EQ(problem(v2, size, identity(2)), Problem::kOtherVersion);
  std::vector<uint8_t> huge = head;
  huge[56 + 7] = 0x80;  // token count 2^63 + 3
  EXPECT_EQ(problem(huge, size, identity(1)), Problem::kDamaged);
  std::vector<uint8_t> wrap = head;
  std::memset(wrap.data() + 80, 0xff, 8);  // payload size 2^64 − 1
  EXPECT_EQ(problem(wrap, size, identity(1)), Problem::kDamaged);
  std::vector<uint8_t> magic = head;
  magic[0] = 'X';
  EXPECT_EQ(problem(magic, size, identity(1)), Problem::kDamaged);
  EXPECT_EQ(problem(std::vector<uint8_t>(head.begin(), head.begin() + 100), size, identity(1)),
            Problem::kDamaged);
}

}  // namespace
}  // namespace magnetar::kvcache
