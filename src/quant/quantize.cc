// Public encoding entry points: validation, per-type dispatch and whole-matrix quantization.
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "quant/codecs.h"
#include "quant/fp16.h"
#include "quant/quant.h"

namespace magnetar::quant {
namespace {

void check_row(const char* what, GgmlType type, int64_t n) {
  if (!can_quantize(type)) {
    throw std::invalid_argument(std::string(what) + ": unsupported type " +
                                std::string(type_name(type)));
  }
  if (!row_fits(type, n)) {
    throw std::invalid_argument(std::string(what) + ": " + std::to_string(n) +
                                " values is not a whole number of " + std::string(type_name(type)) +
                                " blocks");
  }
}

// Encodes one validated row; `importance` may be null, except for IQ2_XXS.
void encode_row(GgmlType type, const float* src, void* dst, int64_t n, const float* importance) {
  const int64_t nb = n / type_info(type).block_elems;
  switch (type) {
    case GgmlType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      break;
    case GgmlType::kF16: {
      auto* h = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) h[i] = f32_to_f16(src[i]);
      break;
    }
    case GgmlType::kBF16: {
      auto* h = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) h[i] = f32_to_bf16(src[i]);
      break;
    }
    case GgmlType::kQ8_0:
      detail::quantize_q8_0(src, static_cast<BlockQ8_0*>(dst), nb);
      break;
    case GgmlType::kQ8_K:
      detail::quantize_q8_k(src, static_cast<BlockQ8_K*>(dst), nb);
      break;
    case GgmlType::kQ2_K:
      detail::quantize_q2_k(src, static_cast<BlockQ2_K*>(dst), nb, importance);
      break;
    case GgmlType::kQ4_K:
      detail::quantize_q4_k(src, static_cast<BlockQ4_K*>(dst), nb, importance);
      break;
    case GgmlType::kIQ2_XXS:
      detail::quantize_iq2_xxs(src, static_cast<BlockIQ2_XXS*>(dst), nb, importance);
      break;
    default:
      break;  // excluded by check_row
  }
}

}  // namespace

bool can_quantize(GgmlType type) { return can_dequantize(type); }

void quantize_row(GgmlType type, const float* src, void* dst, int64_t n, const float* importance) {
  check_row("quantize_row", type, n);
  std::vector<float> ones;
  if (type == GgmlType::kIQ2_XXS && importance == nullptr) {
    ones.assign(static_cast<size_t>(n), 1.0f);
    importance = ones.data();
  }
  encode_row(type, src, dst, n, importance);
}

void quantize_matrix(GgmlType type, const float* src, void* dst, int64_t nrows, int64_t ncols,
                     const float* importance) {
  check_row("quantize_matrix", type, ncols);
  if (nrows < 0) throw std::invalid_argument("quantize_matrix: negative row count");
  // ds4 quantizes an IQ2_XXS tensor without an imatrix against the energy of each input column
  // (§4.9): columns that carry large weights across the matrix are fitted more carefully.
  std::vector<float> energy;
  if (type == GgmlType::kIQ2_XXS && importance == nullptr) {
    energy.assign(static_cast<size_t>(ncols), 0.0f);
    for (int64_t r = 0; r < nrows; ++r) {
      const float* row = src + r * ncols;
      for (int64_t c = 0; c < ncols; ++c) energy[c] += row[c] * row[c];
    }
    importance = energy.data();
  }
  const int64_t row_size = row_bytes(type, ncols);
  for (int64_t r = 0; r < nrows; ++r) {
    encode_row(type, src + r * ncols, static_cast<uint8_t*>(dst) + r * row_size, ncols, importance);
  }
}

}  // namespace magnetar::quant
