// IEEE binary16 (F16) and bfloat16 (BF16) <-> binary32 conversions (shared/spec/gguf.md §4.2).
//
// GGUF stores F16 tensors and every f16 scale inside quantized blocks as raw binary16 bit patterns;
// BF16 is the upper half of a binary32. The decoders are exact (every f16/bf16 value is a float).
// The encoders round to nearest, ties to even, which is what ds4's quantizer produces, so files
// written here carry the same bits:
//   * f32 -> f16: overflow (including values that round up past 65504) gives +-inf, magnitudes at
//     or below half the smallest subnormal (2^-25) give +-0, NaN gives sign | 0x7E00.
//   * f32 -> bf16: NaN gives (bits >> 16) | 0x40 (a quiet NaN with the sign kept); everything else
//     rounds to nearest even on the discarded 16 bits (overflow rounds to inf naturally).
// All functions are pure and inline so that decoders and kernels can call them per element.
#pragma once

#include <bit>
#include <cstdint>

namespace magnetar::quant {

// Decodes a binary16 bit pattern. Normal and special values are a re-biasing of the exponent;
// subnormals (exponent field 0) are mant * 2^-24, which an int-to-float conversion and a multiply
// by a power of two compute exactly. The cases are combined with bit masks instead of branches so
// that loops over rows vectorise.
inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp_mant = h & 0x7fffu;
  const uint32_t special = 0u - static_cast<uint32_t>(exp_mant >= 0x7c00u);  // inf / NaN
  const uint32_t normal_or_special = 0u - static_cast<uint32_t>(exp_mant >= 0x0400u);
  // Rebias the exponent from 15 to 127 (112 << 23); an all-ones exponent must become all ones,
  // i.e. move by (255 - 31) << 23 = 2 * (112 << 23).
  const uint32_t rebias = (112u << 23) + (special & (112u << 23));
  const uint32_t normal = (exp_mant << 13) + rebias;
  const uint32_t subnormal = std::bit_cast<uint32_t>(static_cast<float>(exp_mant) * 0x1p-24f);
  return std::bit_cast<float>(sign | (normal & normal_or_special) |
                              (subnormal & ~normal_or_special));
}

// Encodes a float as binary16, rounding to nearest even.
inline uint16_t f32_to_f16(float f) {
  const uint32_t bits = std::bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t abs = bits & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00u;  // NaN
  // 65520 (0x477ff000) is the midpoint between 65504, the largest f16, and 2^16; ties go to the
  // even neighbour, which is the (infinite) 2^16, so everything from there on overflows.
  if (abs >= 0x477ff000u) return sign | 0x7c00u;
  if (abs >= 0x38800000u) {  // result is a normal f16 (|f| >= 2^-14)
    // Round the 23-bit mantissa to 10 bits in place: adding 0xfff plus the lowest kept bit carries
    // exactly when the dropped part is above half, or exactly half with an odd kept part. A carry
    // out of the mantissa correctly bumps the exponent.
    const uint32_t rounded = abs + 0xfffu + ((abs >> 13) & 1u);
    return sign | static_cast<uint16_t>((rounded >> 13) - ((127u - 15u) << 10));
  }
  // Result is an f16 subnormal (or zero): count units of 2^-24. The float is m * 2^(e - 150) with
  // the implicit bit in m, i.e. m >> (126 - e) units; round the shifted-out bits to nearest even.
  const uint32_t exponent = abs >> 23;
  const uint32_t shift = 126u - exponent;  // >= 14 here
  if (shift > 24) return sign;             // below 2^-25 (or an f32 subnormal): rounds to zero
  const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
  uint32_t units = mant >> shift;
  const uint32_t rest = mant & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1);
  if (rest > half || (rest == half && (units & 1u))) ++units;  // may reach 0x400: smallest normal
  return sign | static_cast<uint16_t>(units);
}

inline float bf16_to_f32(uint16_t h) {
  return std::bit_cast<float>(static_cast<uint32_t>(h) << 16);
}

inline uint16_t f32_to_bf16(float f) {
  const uint32_t bits = std::bit_cast<uint32_t>(f);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);
  return static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

}  // namespace magnetar::quant
