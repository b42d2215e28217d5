// Dot-product kernels in plain C++ (the reference for the SIMD kernels, and the fallback).
#include <cstring>

#include "quant/blocks.h"
#include "quant/dot_kernels.h"
#include "quant/fp16.h"
#include "quant/iq2xxs_tables.h"

namespace magnetar::quant::detail {
namespace {

// Float dot products keep 8 independent partial sums, which breaks the serial dependency of a
// single accumulator and lets the compiler vectorise without reassociating anything itself.
template <typename Decode>
float dot_float_row(int64_t n, const void* w, const float* a, Decode decode) {
  float acc[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) acc[j] += decode(w, i + j) * a[i + j];
  }
  for (; i < n; ++i) acc[0] += decode(w, i) * a[i];
  float sum = 0;
  for (float v : acc) sum += v;
  return sum;
}

float dot_f32(int64_t n, const void* w, const void* a) {
  return dot_float_row(n, w, static_cast<const float*>(a),
                       [](const void* p, int64_t i) { return static_cast<const float*>(p)[i]; });
}

float dot_f16(int64_t n, const void* w, const void* a) {
  return dot_float_row(n, w, static_cast<const float*>(a), [](const void* p, int64_t i) {
    return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
  });
}

float dot_bf16(int64_t n, const void* w, const void* a) {
  return dot_float_row(n, w, static_cast<const float*>(a), [](const void* p, int64_t i) {
    return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
  });
}

float dot_q8_0(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ8_0*>(w);
  const auto* y = static_cast<const BlockQ8_0F*>(a);
  float sum = 0;
  for (int64_t b = 0; b < n / 32; ++b) {
    int isum = 0;
    for (int i = 0; i < 32; ++i) isum += x[b].qs[i] * y[b].qs[i];
    sum += f16_to_f32(x[b].d) * y[b].d * static_cast<float>(isum);
  }
  return sum;
}

float dot_q2_k(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ2_K*>(w);
  const auto* y = static_cast<const BlockQ8_K*>(a);
  float sum = 0;
  for (int64_t b = 0; b < n / 256; ++b) {
    // Bits 2j..2j+1 of qs[32h + l] are element 128h + 32j + l, which lies in sub-block 8h + 2j
    // for l < 16 and 8h + 2j + 1 otherwise.
    int isum = 0;
    for (int h = 0; h < 2; ++h) {
      for (int j = 0; j < 4; ++j) {
        const int8_t* q8 = y[b].qs + 128 * h + 32 * j;
        for (int half = 0; half < 2; ++half) {
          int sub = 0;
          for (int l = 16 * half; l < 16 * half + 16; ++l) {
            sub += ((x[b].qs[32 * h + l] >> (2 * j)) & 3) * q8[l];
          }
          isum += (x[b].scales[8 * h + 2 * j + half] & 15) * sub;
        }
      }
    }
    // The minimums multiply whole sub-blocks of activations, whose sums Q8_K carries.
    int isum_min = 0;
    for (int s = 0; s < 16; ++s) isum_min += (x[b].scales[s] >> 4) * y[b].bsums[s];
    sum += y[b].d * f16_to_f32(x[b].d) * static_cast<float>(isum) -
           y[b].d * f16_to_f32(x[b].dmin) * static_cast<float>(isum_min);
  }
  return sum;
}

float dot_q4_k(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ4_K*>(w);
  const auto* y = static_cast<const BlockQ8_K*>(a);
  float sum = 0;
  for (int64_t b = 0; b < n / 256; ++b) {
    int isum = 0;
    int isum_min = 0;
    for (int j = 0; j < 8; ++j) {
      uint8_t sc;
      uint8_t m;
      q4_k_scale_min(x[b].scales, j, &sc, &m);
      const uint8_t* qs = x[b].qs + 32 * (j / 2);
      const int shift = 4 * (j % 2);
      const int8_t* q8 = y[b].qs + 32 * j;
      int sub = 0;
      for (int l = 0; l < 32; ++l) sub += ((qs[l] >> shift) & 15) * q8[l];
      isum += sc * sub;
      isum_min += m * (y[b].bsums[2 * j] + y[b].bsums[2 * j + 1]);
    }
    sum += y[b].d * f16_to_f32(x[b].d) * static_cast<float>(isum) -
           y[b].d * f16_to_f32(x[b].dmin) * static_cast<float>(isum_min);
  }
  return sum;
}

float dot_iq2_xxs(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockIQ2_XXS*>(w);
  const auto* y = static_cast<const BlockQ8_K*>(a);
  float sum = 0;
  for (int64_t b = 0; b < n / 256; ++b) {
    int isum = 0;
    for (int g = 0; g < 8; ++g) {
      const uint8_t* group = x[b].qs + 8 * g;
      uint32_t word;
      std::memcpy(&word, group + 4, 4);
      // Expand the group to 32 signed magnitudes first, 8 at a time in a 64-bit word, so that
      // the multiply-add runs as one plain (vectorisable) loop. Negating a byte m is
      // (m ^ 0xff) + 1; no carry crosses bytes because grid magnitudes are never 0.
      int8_t v[32];
      for (int k = 0; k < 4; ++k) {
        const uint64_t mask = kIq2xsSignMasks.mask[(word >> (7 * k)) & 127];
        const uint64_t signed_magnitudes =
            (kIq2xxsGrid[group[k]] ^ mask) + (mask & 0x0101010101010101u);
        std::memcpy(v + 8 * k, &signed_magnitudes, 8);
      }
      const int8_t* q8 = y[b].qs + 32 * g;
      int gsum = 0;
      for (int i = 0; i < 32; ++i) gsum += v[i] * q8[i];
      isum += static_cast<int>(2 * (word >> 28) + 1) * gsum;
    }
    // Group scale d * (2s + 1) / 8: the odd factor is applied in integers above.
    sum += f16_to_f32(x[b].d) * y[b].d * 0.125f * static_cast<float>(isum);
  }
  return sum;
}

}  // namespace

const DotKernels kPortableDot = {dot_f32,  dot_f16,  dot_bf16,   dot_q8_0,
                                 dot_q2_k, dot_q4_k, dot_iq2_xxs};

}  // namespace magnetar::quant::detail
