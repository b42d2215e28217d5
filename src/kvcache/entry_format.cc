#include "kvcache/entry_format.h"

#include <algorithm>
#include <cstring>
#include <map>

namespace magnetar::kvcache {
namespace {

constexpr char kMagic[8] = {'M', 'K', 'V', 'C', 'A', 'C', 'H', 'E'};
constexpr size_t kMetadataShaOffset = 96;  // the header's bytes before it are what it covers

void put_u32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void put_u64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint32_t get_u32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t{p[i]} << (8 * i);
  return v;
}
uint64_t get_u64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t{p[i]} << (8 * i);
  return v;
}

void append_u32(std::vector<uint8_t>& out, uint32_t v) {
  uint8_t b[4];
  put_u32(b, v);
  out.insert(out.end(), b, b + 4);
}
void append_bytes(std::vector<uint8_t>& out, std::string_view s) {
  out.insert(out.end(), s.begin(), s.end());
}

EntryFormatError damaged(const std::string& what) {
  return EntryFormatError(Problem::kDamaged, what);
}

// The tool-call section: u32 block count, then per block u32 length + DSML bytes, u32 id count,
// and per id u32 length + id bytes. Ids sharing a block (one turn's calls) store it once.
void encode_tool_calls(std::span<const ToolCallRecord> records, std::vector<uint8_t>& out) {
  std::map<std::string_view, std::vector<std::string_view>> by_block;
  for (const ToolCallRecord& r : records) by_block[r.dsml].push_back(r.id);
  append_u32(out, static_cast<uint32_t>(by_block.size()));
  for (const auto& [dsml, ids] : by_block) {
    append_u32(out, static_cast<uint32_t>(dsml.size()));
    append_bytes(out, dsml);
    append_u32(out, static_cast<uint32_t>(ids.size()));
    for (std::string_view id : ids) {
      append_u32(out, static_cast<uint32_t>(id.size()));
      append_bytes(out, id);
    }
  }
}

class SectionReader {
 public:
  explicit SectionReader(std::span<const uint8_t> bytes) : bytes_(bytes) {}
  uint32_t u32() {
    need(4);
    uint32_t v = get_u32(bytes_.data() + pos_);
    pos_ += 4;
    return v;
  }
  std::string text(uint64_t n) {
    need(n);
    std::string s(reinterpret_cast<const char*>(bytes_.data() + pos_), n);
    pos_ += n;
    return s;
  }
  bool done() const { return pos_ == bytes_.size(); }

 private:
  void need(uint64_t n) const {
    if (n > bytes_.size() - pos_) throw damaged("tool-call section is truncated");
  }
  std::span<const uint8_t> bytes_;
  size_t pos_ = 0;
};

std::vector<ToolCallRecord> decode_tool_calls(std::span<const uint8_t> section) {
  std::vector<ToolCallRecord> records;
  if (section.empty()) return records;
  SectionReader in(section);
  uint32_t blocks = in.u32();
  for (uint32_t b = 0; b < blocks; ++b) {
    uint32_t dsml_bytes = in.u32();
    if (dsml_bytes == 0) throw damaged("tool-call section: empty DSML block");
    std::string dsml = in.text(dsml_bytes);
    uint32_t ids = in.u32();
    if (ids == 0) throw damaged("tool-call section: a block without ids");
    for (uint32_t i = 0; i < ids; ++i) {
      uint32_t id_bytes = in.u32();
      if (id_bytes == 0 || id_bytes > kMaxToolIdBytes)
        throw damaged("tool-call section: id length " + std::to_string(id_bytes));
      records.push_back({in.text(id_bytes), dsml});
    }
  }
  if (!in.done()) throw damaged("tool-call section has trailing bytes");
  return records;
}

}  // namespace

Sha256::Sha256() : ctx_(EVP_MD_CTX_new(), EVP_MD_CTX_free) {
  if (!ctx_ || EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) != 1)
    throw KvCacheError("SHA-256: OpenSSL could not start a digest");
}

Sha256& Sha256::update(std::span<const uint8_t> bytes) {
  if (EVP_DigestUpdate(ctx_.get(), bytes.data(), bytes.size()) != 1)
    throw KvCacheError("SHA-256: OpenSSL digest update failed");
  return *this;
}

Sha256& Sha256::update(std::string_view bytes) {
  return update(std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
}

Digest Sha256::finish() {
  Digest d{};
  unsigned int n = 0;
  if (EVP_DigestFinal_ex(ctx_.get(), d.data(), &n) != 1 || n != d.size())
    throw KvCacheError("SHA-256: OpenSSL digest final failed");
  return d;
}

std::string to_hex(std::span<const uint8_t> bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s;
  s.reserve(2 * bytes.size());
  for (uint8_t b : bytes) {
    s += kHex[b >> 4];
    s += kHex[b & 15];
  }
  return s;
}

std::string entry_name(const ModelIdentity& model, std::span<const int32_t> tokens,
                       std::string_view key_text) {
  uint8_t count[8];
  put_u64(count, tokens.size());
  std::vector<uint8_t> token_bytes(4 * tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i)
    put_u32(token_bytes.data() + 4 * i, static_cast<uint32_t>(tokens[i]));
  Digest d = Sha256().update(model).update(count).update(token_bytes).update(key_text).finish();
  return to_hex(d) + std::string(kEntrySuffix);
}

bool is_entry_name(std::string_view file_name) {
  if (file_name.size() != 64 + kEntrySuffix.size() || !file_name.ends_with(kEntrySuffix))
    return false;
  return std::all_of(file_name.begin(), file_name.begin() + 64,
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

std::array<uint8_t, kUsageBytes> encode_usage(const EntryUsage& usage) {
  std::array<uint8_t, kUsageBytes> block{};
  put_u64(block.data(), usage.hits);
  put_u64(block.data() + 8, static_cast<uint64_t>(usage.last_used));
  // block[16, 24) reserved, zero
  Digest check = Sha256().update(std::span(block).first(24)).finish();
  std::copy(check.begin(), check.begin() + 8, block.begin() + 24);
  return block;
}

std::optional<EntryUsage> decode_usage(std::span<const uint8_t> block) {
  if (block.size() != kUsageBytes) return std::nullopt;
  Digest check = Sha256().update(block.first(24)).finish();
  if (!std::equal(check.begin(), check.begin() + 8, block.begin() + 24)) return std::nullopt;
  return EntryUsage{get_u64(block.data()), static_cast<int64_t>(get_u64(block.data() + 8))};
}

std::vector<uint8_t> encode_entry_head(EntryHeader& header, const EntryUsage& usage,
                                       const EntryMetadata& metadata, uint64_t payload_bytes) {
  std::vector<uint8_t> tools;
  if (!metadata.tool_calls.empty()) encode_tool_calls(metadata.tool_calls, tools);
  header.version = kFormatVersion;
  header.token_count = metadata.tokens.size();
  header.text_bytes = metadata.key_text.size();
  header.tool_bytes = tools.size();
  header.payload_bytes = payload_bytes;

  std::vector<uint8_t> out(kMetadataOffset);
  uint8_t* h = out.data();
  std::memcpy(h, kMagic, 8);
  put_u32(h + 8, header.version);
  put_u32(h + 12, static_cast<uint32_t>(header.reason));
  put_u32(h + 16, static_cast<uint32_t>(header.key_kind));
  put_u32(h + 20, 0);  // reserved
  std::copy(header.model.begin(), header.model.end(), h + 24);
  put_u64(h + 56, header.token_count);
  put_u64(h + 64, header.text_bytes);
  put_u64(h + 72, header.tool_bytes);
  put_u64(h + 80, header.payload_bytes);
  put_u64(h + 88, static_cast<uint64_t>(header.created));

  size_t metadata_start = out.size();
  out.resize(out.size() + 4 * metadata.tokens.size());
  for (size_t i = 0; i < metadata.tokens.size(); ++i)
    put_u32(out.data() + metadata_start + 4 * i, static_cast<uint32_t>(metadata.tokens[i]));
  append_bytes(out, metadata.key_text);
  out.insert(out.end(), tools.begin(), tools.end());

  header.metadata_sha = Sha256()
                            .update(std::span(out).first(kMetadataShaOffset))
                            .update(std::span(out).subspan(metadata_start))
                            .finish();
  std::copy(header.metadata_sha.begin(), header.metadata_sha.end(), out.data() + 96);
  std::array<uint8_t, kUsageBytes> usage_block = encode_usage(usage);
  std::copy(usage_block.begin(), usage_block.end(), out.data() + kUsageOffset);
  return out;
}

EntryHeader decode_header(std::span<const uint8_t> prefix, const ModelIdentity& model,
                          uint64_t file_bytes) {
  if (prefix.size() < kMetadataOffset || file_bytes < kMetadataOffset + kChecksumBytes)
    throw damaged("file is " + std::to_string(file_bytes) + " bytes, shorter than any entry");
  const uint8_t* h = prefix.data();
  if (std::memcmp(h, kMagic, 8) != 0) throw damaged("not a Magnetar KV cache file (bad magic)");
  EntryHeader header;
  header.version = get_u32(h + 8);
  if (header.version != kFormatVersion)
    throw EntryFormatError(Problem::kOtherVersion, "format version " +
                                                       std::to_string(header.version) +
                                                       " (this build reads version " +
                                                       std::to_string(kFormatVersion) + ")");
  std::copy(h + 24, h + 56, header.model.begin());
  if (header.model != model)
    throw EntryFormatError(
        Problem::kOtherModel,
        "written for another model (identity " + to_hex(std::span(header.model).first(8)) + "…)");
  uint32_t reason = get_u32(h + 12), kind = get_u32(h + 16);
  if (reason > static_cast<uint32_t>(SaveReason::kShutdown))
    throw damaged("unknown save reason " + std::to_string(reason));
  if (kind > static_cast<uint32_t>(KeyKind::kThinkingVisible))
    throw damaged("unknown key kind " + std::to_string(kind));
  if (get_u32(h + 20) != 0) throw damaged("reserved header field is not zero");
  header.reason = static_cast<SaveReason>(reason);
  header.key_kind = static_cast<KeyKind>(kind);
  header.token_count = get_u64(h + 56);
  header.text_bytes = get_u64(h + 64);
  header.tool_bytes = get_u64(h + 72);
  header.payload_bytes = get_u64(h + 80);
  header.created = static_cast<int64_t>(get_u64(h + 88));
  std::copy(h + 96, h + 128, header.metadata_sha.begin());

  if (header.token_count == 0 || header.token_count > kMaxTokens)
    throw damaged("token count " + std::to_string(header.token_count));
  // Each size is bounded before they are added, so the sum cannot wrap.
  if (header.text_bytes > kMaxMetadataBytes || header.tool_bytes > kMaxMetadataBytes ||
      header.metadata_bytes() > kMaxMetadataBytes)
    throw damaged("metadata of " + std::to_string(header.text_bytes) + " text and " +
                  std::to_string(header.tool_bytes) + " tool-call bytes");
  if (header.payload_bytes == 0 || header.payload_bytes > file_bytes)
    throw damaged("payload size " + std::to_string(header.payload_bytes));
  if (header.file_bytes() != file_bytes)
    throw damaged("file is " + std::to_string(file_bytes) + " bytes but its header describes " +
                  std::to_string(header.file_bytes()) + " (truncated or torn)");
  return header;
}

EntryMetadata decode_metadata(const EntryHeader& header, std::span<const uint8_t> header_bytes,
                              std::span<const uint8_t> metadata) {
  if (metadata.size() != header.metadata_bytes() || header_bytes.size() < kMetadataShaOffset)
    throw damaged("metadata section has the wrong size");
  Digest sha = Sha256().update(header_bytes.first(kMetadataShaOffset)).update(metadata).finish();
  if (sha != header.metadata_sha) throw damaged("metadata checksum mismatch");
  EntryMetadata m;
  m.tokens.resize(header.token_count);
  for (size_t i = 0; i < m.tokens.size(); ++i)
    m.tokens[i] = static_cast<int32_t>(get_u32(metadata.data() + 4 * i));
  size_t text_start = 4 * header.token_count;
  m.key_text.assign(reinterpret_cast<const char*>(metadata.data() + text_start), header.text_bytes);
  m.tool_calls = decode_tool_calls(metadata.subspan(text_start + header.text_bytes));
  return m;
}

}  // namespace magnetar::kvcache
