// Hand-assembled GGUF images for tests and fuzzing.
//
// These bytes are written field by field from the format description (gguf.md §1), not through
// Magnetar's writer, so a reader/writer pair that agreed on a wrong layout would still be caught.
// corrupt_cases() turns the small valid image into one broken variant per validation rule; the
// reader must reject each with a GgufError mentioning `expect`.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace magnetar::testing {

// One metadata record: key, wire type id, encoded value bytes.
struct RawKv {
  std::string key;
  uint32_t type;
  std::vector<uint8_t> value;
};

// One tensor info record.
struct RawTensor {
  std::string name;
  std::vector<uint64_t> ne;
  uint32_t type;
  uint64_t offset;
};

struct RawImage {
  uint32_t magic = 0x46554747;
  uint32_t version = 3;
  std::vector<RawKv> kvs;
  std::vector<RawTensor> tensors;
  uint64_t alignment = 32;  // padding used after the tensor infos
  uint64_t data_bytes = 0;  // bytes of data section after padding (filled with a pattern)
  // When set, these override the counts written in the header.
  std::optional<uint64_t> tensor_count, kv_count;

  std::vector<uint8_t> encode() const;
};

// Value encoders.
std::vector<uint8_t> le_u8(uint8_t v);
std::vector<uint8_t> le_u32(uint32_t v);
std::vector<uint8_t> le_u64(uint64_t v);
std::vector<uint8_t> le_f32(float v);
std::vector<uint8_t> le_string(const std::string& s);
std::vector<uint8_t> concat(std::initializer_list<std::vector<uint8_t>> parts);

// A small valid image: every scalar type, a string array, a nested array, general.alignment,
// three tensors (F32 [8,2], Q8_0 [64], I32 [4]) with known data.
RawImage small_valid_image();

struct CorruptCase {
  std::string name;
  std::vector<uint8_t> bytes;
  std::string expect;  // substring of the expected error message
};

// One case per rule the reader enforces (bad magic, version, counts, lengths, types, nesting,
// dimensions, offsets, overlap, duplicates, alignment) plus truncations of the valid image.
// `all_truncations` adds every proper prefix; otherwise a handful spread across the header.
std::vector<CorruptCase> corrupt_cases(bool all_truncations);

}  // namespace magnetar::testing
