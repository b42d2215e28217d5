// Row decoders for every supported format (shared/spec/gguf.md §4.2 - §4.6, §4.8).
#include <cstring>
#include <stdexcept>
#include <string>

#include "quant/codecs.h"
#include "quant/fp16.h"
#include "quant/iq2xxs_tables.h"
#include "quant/quant.h"

namespace magnetar::quant {
namespace detail {

void dequantize_q8_0(const BlockQ8_0* x, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, y += 32) {
    const float d = f16_to_f32(x[b].d);
    for (int i = 0; i < 32; ++i) y[i] = d * x[b].qs[i];
  }
}

void dequantize_q8_k(const BlockQ8_K* x, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, y += 256) {
    for (int i = 0; i < 256; ++i) y[i] = x[b].d * x[b].qs[i];
  }
}

void dequantize_q2_k(const BlockQ2_K* x, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, y += 256) {
    const float d = f16_to_f32(x[b].d);
    const float dmin = f16_to_f32(x[b].dmin);
    for (int e = 0; e < 256; ++e) {
      const int h = e / 128;
      const int j = (e % 128) / 32;
      const int l = e % 32;
      const int q = (x[b].qs[32 * h + l] >> (2 * j)) & 3;
      const uint8_t s = x[b].scales[e / 16];
      y[e] = d * (s & 15) * q - dmin * (s >> 4);
    }
  }
}

void dequantize_q4_k(const BlockQ4_K* x, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, y += 256) {
    const float d = f16_to_f32(x[b].d);
    const float dmin = f16_to_f32(x[b].dmin);
    for (int j = 0; j < 8; ++j) {
      uint8_t sc;
      uint8_t m;
      q4_k_scale_min(x[b].scales, j, &sc, &m);
      const float scale = d * sc;
      const float offset = dmin * m;
      // Sub-block j is the low (even j) or high (odd j) nibbles of qs[32 * (j / 2) ...].
      const uint8_t* qs = x[b].qs + 32 * (j / 2);
      const int shift = 4 * (j % 2);
      for (int l = 0; l < 32; ++l) y[32 * j + l] = scale * ((qs[l] >> shift) & 15) - offset;
    }
  }
}

void dequantize_iq2_xxs(const BlockIQ2_XXS* x, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b) {
    const float d = f16_to_f32(x[b].d);
    for (int g = 0; g < 8; ++g) {
      const uint8_t* group = x[b].qs + 8 * g;
      uint32_t word;
      std::memcpy(&word, group + 4, 4);
      const float db = d * (0.5f + static_cast<float>(word >> 28)) * 0.25f;
      for (int k = 0; k < 4; ++k, y += 8) {
        const uint64_t magnitudes = kIq2xxsGrid[group[k]];
        const uint8_t signs = kIq2xsSigns[(word >> (7 * k)) & 127];
        for (int i = 0; i < 8; ++i) {
          const float v = db * static_cast<float>((magnitudes >> (8 * i)) & 0xff);
          y[i] = (signs >> i) & 1 ? -v : v;
        }
      }
    }
  }
}

}  // namespace detail

bool can_dequantize(GgmlType type) {
  switch (type) {
    case GgmlType::kF32:
    case GgmlType::kF16:
    case GgmlType::kBF16:
    case GgmlType::kQ8_0:
    case GgmlType::kQ8_K:
    case GgmlType::kQ2_K:
    case GgmlType::kQ4_K:
    case GgmlType::kIQ2_XXS:
      return true;
    default:
      return false;
  }
}

void dequantize_row(GgmlType type, const void* src, float* dst, int64_t n) {
  if (!can_dequantize(type)) {
    throw std::invalid_argument("dequantize_row: unsupported type " + std::string(type_name(type)));
  }
  if (!row_fits(type, n)) {
    throw std::invalid_argument("dequantize_row: " + std::to_string(n) +
                                " values is not a whole number of " + std::string(type_name(type)) +
                                " blocks");
  }
  const int64_t nb = n / type_info(type).block_elems;
  switch (type) {
    case GgmlType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      break;
    case GgmlType::kF16: {
      const auto* h = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(h[i]);
      break;
    }
    case GgmlType::kBF16: {
      const auto* h = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(h[i]);
      break;
    }
    case GgmlType::kQ8_0:
      detail::dequantize_q8_0(static_cast<const BlockQ8_0*>(src), dst, nb);
      break;
    case GgmlType::kQ8_K:
      detail::dequantize_q8_k(static_cast<const BlockQ8_K*>(src), dst, nb);
      break;
    case GgmlType::kQ2_K:
      detail::dequantize_q2_k(static_cast<const BlockQ2_K*>(src), dst, nb);
      break;
    case GgmlType::kQ4_K:
      detail::dequantize_q4_k(static_cast<const BlockQ4_K*>(src), dst, nb);
      break;
    case GgmlType::kIQ2_XXS:
      detail::dequantize_iq2_xxs(static_cast<const BlockIQ2_XXS*>(src), dst, nb);
      break;
    default:
      break;  // excluded by can_dequantize above
  }
}

}  // namespace magnetar::quant
