// ggml tensor type ids and block geometry.
//
// Every tensor in a GGUF file is stored in one of the ggml types. A type packs `block_elems`
// values into `block_bytes` bytes, always along the fastest-varying dimension (ne[0]); plain types
// (F32, F16, ...) are blocks of one element. The ids and sizes are those of ggml
// (ggml-common.h), which ds4's files use unchanged; see shared/spec/gguf.md §1.7. The table holds
// every id ggml defines so that a reader can size (and skip) tensors of types Magnetar does not
// compute with; which types have kernels is the business of quant.h.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace magnetar::quant {

enum class GgmlType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kIQ2_XXS = 16,
  kIQ2_XS = 17,
  kIQ3_XXS = 18,
  kIQ1_S = 19,
  kIQ4_NL = 20,
  kIQ3_S = 21,
  kIQ2_S = 22,
  kIQ4_XS = 23,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kIQ1_M = 29,
  kBF16 = 30,
  kTQ1_0 = 34,
  kTQ2_0 = 35,
  kMXFP4 = 39,
};

struct TypeInfo {
  GgmlType type;
  std::string_view name;  // ggml's spelling: "f32", "q8_0", "iq2_xxs", ...
  int64_t block_elems;    // values per block
  int64_t block_bytes;    // bytes per block
};

// The entry for a raw type id as read from a file, or nullptr when ggml defines no such id.
const TypeInfo* find_type(uint32_t id);

// The entry for a known type (never null).
const TypeInfo& type_info(GgmlType type);

// Looks a type up by its ggml name, case-insensitively ("Q8_0", "iq2_xxs").
std::optional<GgmlType> type_from_name(std::string_view name);

inline std::string_view type_name(GgmlType type) { return type_info(type).name; }

// Bytes of one row of `n` values. `n` must be a multiple of the block size; callers validate
// shapes first (see row_fits()).
int64_t row_bytes(GgmlType type, int64_t n);

// True when a row of `n` values is a whole number of blocks.
bool row_fits(GgmlType type, int64_t n);

}  // namespace magnetar::quant
