// Dot-product kernels for x86-64 with AVX2, FMA and F16C.
//
// This file is compiled with -mavx2 -mfma -mf16c and its kernels only run after a CPU check. It
// must not call inline functions or templates from shared headers (std::min, fp16.h, ...): their
// out-of-line copies would be emitted with AVX encodings and the linker could pick them for the
// portable code. Everything here is intrinsics, local functions and plain data.
#include <immintrin.h>

#include "quant/blocks.h"
#include "quant/dot_kernels.h"
#include "quant/iq2xxs_tables.h"

namespace magnetar::quant::detail {
namespace {

float f16_scalar(uint16_t h) { return _cvtsh_ss(h); }

float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

int hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}

// Float rows: 32 products per step into four independent accumulators. `load8(i)` turns the 8
// weights at index i into floats, `load1(i)` one weight (for the tail). (Templates and lambdas in
// this anonymous namespace have internal linkage, so the rule above does not apply to them.)
template <typename Load8, typename Load1>
float dot_float_row(int64_t n, const void* a, Load8 load8, Load1 load1) {
  const float* y = static_cast<const float*>(a);
  __m256 acc0 = _mm256_setzero_ps();
  __m256 acc1 = acc0;
  __m256 acc2 = acc0;
  __m256 acc3 = acc0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm256_fmadd_ps(load8(i), _mm256_loadu_ps(y + i), acc0);
    acc1 = _mm256_fmadd_ps(load8(i + 8), _mm256_loadu_ps(y + i + 8), acc1);
    acc2 = _mm256_fmadd_ps(load8(i + 16), _mm256_loadu_ps(y + i + 16), acc2);
    acc3 = _mm256_fmadd_ps(load8(i + 24), _mm256_loadu_ps(y + i + 24), acc3);
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(load8(i), _mm256_loadu_ps(y + i), acc0);
  float sum = hsum(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
  for (; i < n; ++i) sum += load1(i) * y[i];
  return sum;
}

float dot_f32(int64_t n, const void* w, const void* a) {
  const float* x = static_cast<const float*>(w);
  return dot_float_row(
      n, a, [x](int64_t i) { return _mm256_loadu_ps(x + i); }, [x](int64_t i) { return x[i]; });
}

float dot_f16(int64_t n, const void* w, const void* a) {
  const uint16_t* x = static_cast<const uint16_t*>(w);
  return dot_float_row(
      n, a,
      [x](int64_t i) {
        return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i)));
      },
      [x](int64_t i) { return f16_scalar(x[i]); });
}

float dot_bf16(int64_t n, const void* w, const void* a) {
  const uint16_t* x = static_cast<const uint16_t*>(w);
  return dot_float_row(
      n, a,
      [x](int64_t i) {
        const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i));
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
      },
      [x](int64_t i) {
        return _mm_cvtss_f32(_mm_castsi128_ps(_mm_cvtsi32_si128(static_cast<int>(x[i]) << 16)));
      });
}

__m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// Signed int8 x int8 products summed in pairs: maddubs needs an unsigned first operand, so move
// x's sign onto y. Exact while |y| <= 127, which the activation encoders guarantee.
__m256i mul_pairs_i8(__m256i x, __m256i y) {
  return _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}

float dot_q8_0(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ8_0*>(w);
  const auto* y = static_cast<const BlockQ8_0F*>(a);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / 32; ++b) {
    const __m256i p = _mm256_madd_epi16(mul_pairs_i8(load32(x[b].qs), load32(y[b].qs)), ones);
    const __m256 d = _mm256_set1_ps(f16_scalar(x[b].d) * y[b].d);
    acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);
  }
  return hsum(acc);
}

float dot_q2_k(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ2_K*>(w);
  const auto* y = static_cast<const BlockQ8_K*>(a);
  const __m256i m3 = _mm256_set1_epi8(3);
  const __m128i m4 = _mm_set1_epi8(15);
  // For the 32 elements 128h + 32j + l (l = 0..31) the 16-bit scales of sub-block s = 8h + 2j
  // (first 16 elements: low lane) and s + 1 (high lane): shuffle indices s or s + 1, each followed
  // by 0x80 to zero the high byte. first_pick is chunk 0; chunk c adds 2c to every index.
  const int16_t lo = static_cast<int16_t>(0x8000);
  const int16_t hi = static_cast<int16_t>(0x8001);
  const __m256i first_pick =
      _mm256_setr_epi16(lo, lo, lo, lo, lo, lo, lo, lo, hi, hi, hi, hi, hi, hi, hi, hi);
  __m256 acc = _mm256_setzero_ps();
  float acc_min = 0;
  for (int64_t b = 0; b < n / 256; ++b) {
    const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[b].scales));
    const __m256i scales = _mm256_broadcastsi128_si256(_mm_and_si128(packed, m4));
    const __m256i mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), m4));
    const __m256i bsums = load32(y[b].bsums);
    const int isum_min = hsum_epi32(_mm256_madd_epi16(mins, bsums));

    __m256i isum = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const __m256i bits = load32(x[b].qs + 32 * h);
      for (int j = 0; j < 4; ++j) {
        const __m256i q2 = _mm256_and_si256(_mm256_srli_epi16(bits, 2 * j), m3);
        const __m256i p = _mm256_maddubs_epi16(q2, load32(y[b].qs + 128 * h + 32 * j));
        const __m256i pick =
            _mm256_add_epi16(first_pick, _mm256_set1_epi16(static_cast<int16_t>(2 * (4 * h + j))));
        const __m256i sc = _mm256_shuffle_epi8(scales, pick);
        isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, sc));
      }
    }
    const float d = y[b].d * f16_scalar(x[b].d);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(isum), acc);
    acc_min += y[b].d * f16_scalar(x[b].dmin) * static_cast<float>(isum_min);
  }
  return hsum(acc) - acc_min;
}

float dot_q4_k(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ4_K*>(w);
  const auto* y = static_cast<const BlockQ8_K*>(a);
  const __m256i m4 = _mm256_set1_epi8(15);
  __m256 acc = _mm256_setzero_ps();
  float acc_min = 0;
  for (int64_t b = 0; b < n / 256; ++b) {
    // The 6-bit scales and mins, unpacked as q4_k_scale_min (blocks.h) does; written out here
    // because that inline helper must not be compiled into this file (see the top comment).
    const uint8_t* s = x[b].scales;
    int sc[8];
    int m[8];
    for (int j = 0; j < 4; ++j) {
      sc[j] = s[j] & 63;
      m[j] = s[j + 4] & 63;
      sc[j + 4] = (s[j + 8] & 15) | ((s[j] >> 6) << 4);
      m[j + 4] = (s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4);
    }
    int isum_min = 0;
    for (int j = 0; j < 8; ++j) isum_min += m[j] * (y[b].bsums[2 * j] + y[b].bsums[2 * j + 1]);

    __m256i isum = _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {
      const __m256i bits = load32(x[b].qs + 32 * c);
      const __m256i lo = _mm256_and_si256(bits, m4);
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
      const __m256i p_lo = _mm256_maddubs_epi16(lo, load32(y[b].qs + 64 * c));
      const __m256i p_hi = _mm256_maddubs_epi16(hi, load32(y[b].qs + 64 * c + 32));
      isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p_lo, _mm256_set1_epi16(sc[2 * c])));
      isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p_hi, _mm256_set1_epi16(sc[2 * c + 1])));
    }
    const float d = y[b].d * f16_scalar(x[b].d);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(isum), acc);
    acc_min += y[b].d * f16_scalar(x[b].dmin) * static_cast<float>(isum_min);
  }
  return hsum(acc) - acc_min;
}

float dot_iq2_xxs(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockIQ2_XXS*>(w);
  const auto* y = static_cast<const BlockQ8_K*>(a);
  const __m256i one = _mm256_set1_epi8(1);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / 256; ++b) {
    __m256i isum = _mm256_setzero_si256();
    for (int g = 0; g < 8; ++g) {
      const uint8_t* group = x[b].qs + 8 * g;
      const uint32_t word = static_cast<uint32_t>(group[4]) | static_cast<uint32_t>(group[5]) << 8 |
                            static_cast<uint32_t>(group[6]) << 16 |
                            static_cast<uint32_t>(group[7]) << 24;
      const __m256i grid = _mm256_setr_epi64x(
          static_cast<int64_t>(kIq2xxsGrid[group[0]]), static_cast<int64_t>(kIq2xxsGrid[group[1]]),
          static_cast<int64_t>(kIq2xxsGrid[group[2]]), static_cast<int64_t>(kIq2xxsGrid[group[3]]));
      const __m256i neg =
          _mm256_setr_epi64x(static_cast<int64_t>(kIq2xsSignMasks.mask[word & 127]),
                             static_cast<int64_t>(kIq2xsSignMasks.mask[(word >> 7) & 127]),
                             static_cast<int64_t>(kIq2xsSignMasks.mask[(word >> 14) & 127]),
                             static_cast<int64_t>(kIq2xsSignMasks.mask[(word >> 21) & 127]));
      // sign_epi8 negates q8 where the mask byte is -1 (0xff) and keeps it where it is +1.
      const __m256i q8 = _mm256_sign_epi8(load32(y[b].qs + 32 * g), _mm256_or_si256(neg, one));
      const __m256i p = _mm256_maddubs_epi16(grid, q8);
      const __m256i scale = _mm256_set1_epi16(static_cast<int16_t>(2 * (word >> 28) + 1));
      isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, scale));
    }
    const float d = f16_scalar(x[b].d) * y[b].d * 0.125f;
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(isum), acc);
  }
  return hsum(acc);
}

}  // namespace

const DotKernels kAvx2Dot = {dot_f32, dot_f16, dot_bf16, dot_q8_0, dot_q2_k, dot_q4_k, dot_iq2_xxs};

}  // namespace magnetar::quant::detail
