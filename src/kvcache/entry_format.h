// One disk cache entry as bytes: Magnetar's own file format (docs/kv-cache.md has the byte table;
// ds4's files, kv-cache.md §3–7, are not read).
//
//   [0, 128)    header: magic "MKVCACHE", format version, save reason, key kind, model identity,
//               section sizes, creation time, and the SHA-256 of the metadata (the header's first
//               96 bytes, the tokens, the key text and the tool-call section)
//   [128, 160)  usage: hit count and last use, the only bytes ever rewritten in place, with their
//               own check value (a torn rewrite resets the hit count; it never loses the entry)
//   [160, ...)  metadata: token ids (i32), key text, tool-call records
//   then        payload: the engine's session bytes (engine/session_codec.h), opaque here
//   last 32     SHA-256 of the whole file except the usage block and this checksum
//
// All integers are little-endian. The metadata checksum lets the cache index a directory by
// reading headers and metadata only; the whole-file checksum is verified on every load, so a torn,
// truncated or bit-flipped file is refused before any of it reaches the engine. The file name is
// the SHA-256 of the model identity, the tokens and the key text (entry_name), so an entry cannot
// be renamed into a different key, and two models never share a name.
#pragma once

#include <openssl/evp.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvcache/kvcache_error.h"
#include "kvcache/save_reason.h"
#include "kvcache/tool_id_map.h"

namespace magnetar::kvcache {

using ModelIdentity = std::array<uint8_t, 32>;  // engine::Engine::identity()
using Digest = std::array<uint8_t, 32>;

inline constexpr uint32_t kFormatVersion = 1;
inline constexpr uint64_t kHeaderBytes = 128;
inline constexpr uint64_t kUsageOffset = kHeaderBytes;
inline constexpr uint64_t kUsageBytes = 32;
inline constexpr uint64_t kMetadataOffset = kUsageOffset + kUsageBytes;
inline constexpr uint64_t kChecksumBytes = 32;
// Bounds a header may claim before it is called damaged: they keep a bad header from making the
// reader allocate absurd buffers, and are far above what a real checkpoint holds.
inline constexpr uint64_t kMaxTokens = uint64_t{1} << 28;
inline constexpr uint64_t kMaxMetadataBytes = uint64_t{1} << 31;
inline constexpr uint32_t kMaxToolIdBytes = 256;

struct EntryHeader {
  uint32_t version = kFormatVersion;
  SaveReason reason = SaveReason::kUnknown;
  KeyKind key_kind = KeyKind::kTokenText;
  ModelIdentity model{};
  uint64_t token_count = 0;
  uint64_t text_bytes = 0;
  uint64_t tool_bytes = 0;
  uint64_t payload_bytes = 0;
  int64_t created = 0;  // Unix seconds
  Digest metadata_sha{};

  uint64_t metadata_bytes() const { return 4 * token_count + text_bytes + tool_bytes; }
  uint64_t payload_offset() const { return kMetadataOffset + metadata_bytes(); }
  uint64_t file_bytes() const { return payload_offset() + payload_bytes + kChecksumBytes; }
};

struct EntryUsage {
  uint64_t hits = 0;
  int64_t last_used = 0;  // Unix seconds
};

struct EntryMetadata {
  std::vector<int32_t> tokens;
  std::string key_text;
  std::vector<ToolCallRecord> tool_calls;
};

// Why a file is not an entry this process can use. kOtherModel and kOtherVersion files are intact
// files of another model or another format version: kept, never loaded. kDamaged files are not
// entries at all (torn, truncated, bit-flipped, or not written by Magnetar).
enum class Problem { kDamaged, kOtherModel, kOtherVersion };

class EntryFormatError : public KvCacheError {
 public:
  EntryFormatError(Problem problem, const std::string& message)
      : KvCacheError(message), problem_(problem) {}
  Problem problem() const { return problem_; }

 private:
  Problem problem_;
};

// Incremental SHA-256 (OpenSSL EVP).
class Sha256 {
 public:
  Sha256();
  Sha256& update(std::span<const uint8_t> bytes);
  Sha256& update(std::string_view bytes);
  Digest finish();

 private:
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx_;
};

std::string to_hex(std::span<const uint8_t> bytes);

// The file name of the entry: 64 hex digits of SHA-256(model, token count, tokens, key text),
// then ".mkv".
std::string entry_name(const ModelIdentity& model, std::span<const int32_t> tokens,
                       std::string_view key_text);
inline constexpr std::string_view kEntrySuffix = ".mkv";
bool is_entry_name(std::string_view file_name);

// Fills the header's sizes and metadata checksum and returns the bytes that precede the payload
// (header, usage, metadata).
std::vector<uint8_t> encode_entry_head(EntryHeader& header, const EntryUsage& usage,
                                       const EntryMetadata& metadata, uint64_t payload_bytes);
std::array<uint8_t, kUsageBytes> encode_usage(const EntryUsage& usage);

// Parses the first kMetadataOffset bytes of a file of `file_bytes` bytes. Throws EntryFormatError:
// kDamaged for a wrong magic, impossible sizes or a size that differs from the file's;
// kOtherVersion; kOtherModel when the identity is not `model` (checked after the version, so a
// foreign file of another version reads as another version).
EntryHeader decode_header(std::span<const uint8_t> prefix, const ModelIdentity& model,
                          uint64_t file_bytes);
// The usage block, or nothing when its check value does not match (a torn rewrite).
std::optional<EntryUsage> decode_usage(std::span<const uint8_t> usage_block);
// Verifies the metadata checksum and parses the metadata section. Throws EntryFormatError
// (kDamaged).
EntryMetadata decode_metadata(const EntryHeader& header, std::span<const uint8_t> header_bytes,
                              std::span<const uint8_t> metadata);

}  // namespace magnetar::kvcache
