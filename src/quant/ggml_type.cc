#include "quant/ggml_type.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <stdexcept>

namespace magnetar::quant {
namespace {

using T = GgmlType;

// ggml-common.h block sizes. Ids 4, 5 (removed Q4_2/Q4_3) and 31..33, 36..38 (removed or
// repacked layouts) are deliberately absent: no file may use them.
constexpr std::array<TypeInfo, 32> kTypes = {{
    {T::kF32, "f32", 1, 4},
    {T::kF16, "f16", 1, 2},
    {T::kQ4_0, "q4_0", 32, 18},
    {T::kQ4_1, "q4_1", 32, 20},
    {T::kQ5_0, "q5_0", 32, 22},
    {T::kQ5_1, "q5_1", 32, 24},
    {T::kQ8_0, "q8_0", 32, 34},
    {T::kQ8_1, "q8_1", 32, 36},
    {T::kQ2_K, "q2_K", 256, 84},
    {T::kQ3_K, "q3_K", 256, 110},
    {T::kQ4_K, "q4_K", 256, 144},
    {T::kQ5_K, "q5_K", 256, 176},
    {T::kQ6_K, "q6_K", 256, 210},
    {T::kQ8_K, "q8_K", 256, 292},
    {T::kIQ2_XXS, "iq2_xxs", 256, 66},
    {T::kIQ2_XS, "iq2_xs", 256, 74},
    {T::kIQ3_XXS, "iq3_xxs", 256, 98},
    {T::kIQ1_S, "iq1_s", 256, 50},
    {T::kIQ4_NL, "iq4_nl", 32, 18},
    {T::kIQ3_S, "iq3_s", 256, 110},
    {T::kIQ2_S, "iq2_s", 256, 82},
    {T::kIQ4_XS, "iq4_xs", 256, 136},
    {T::kI8, "i8", 1, 1},
    {T::kI16, "i16", 1, 2},
    {T::kI32, "i32", 1, 4},
    {T::kI64, "i64", 1, 8},
    {T::kF64, "f64", 1, 8},
    {T::kIQ1_M, "iq1_m", 256, 56},
    {T::kBF16, "bf16", 1, 2},
    {T::kTQ1_0, "tq1_0", 256, 54},
    {T::kTQ2_0, "tq2_0", 256, 66},
    {T::kMXFP4, "mxfp4", 32, 17},
}};

bool equal_ignoring_case(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

}  // namespace

const TypeInfo* find_type(uint32_t id) {
  for (const TypeInfo& info : kTypes) {
    if (static_cast<uint32_t>(info.type) == id) return &info;
  }
  return nullptr;
}

const TypeInfo& type_info(GgmlType type) {
  const TypeInfo* info = find_type(static_cast<uint32_t>(type));
  if (info == nullptr) throw std::logic_error("type_info: not a ggml type");
  return *info;
}

std::optional<GgmlType> type_from_name(std::string_view name) {
  for (const TypeInfo& info : kTypes) {
    if (equal_ignoring_case(info.name, name)) return info.type;
  }
  return std::nullopt;
}

bool row_fits(GgmlType type, int64_t n) { return n >= 0 && n % type_info(type).block_elems == 0; }

int64_t row_bytes(GgmlType type, int64_t n) {
  const TypeInfo& info = type_info(type);
  return n / info.block_elems * info.block_bytes;
}

}  // namespace magnetar::quant
