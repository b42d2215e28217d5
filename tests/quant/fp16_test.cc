// F16 / BF16 conversions (shared/spec/gguf.md §4.2), checked against independent arithmetic.
#include "quant/fp16.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace magnetar::quant {
namespace {

// binary16 value from its fields, computed with ldexp (independent of the bit tricks).
double f16_reference(uint16_t h) {
  const int sign = h >> 15;
  const int exp = (h >> 10) & 31;
  const int mant = h & 1023;
  double v;
  if (exp == 31) {
    v = mant == 0 ? std::numeric_limits<double>::infinity()
                  : std::numeric_limits<double>::quiet_NaN();
  } else if (exp == 0) {
    v = std::ldexp(static_cast<double>(mant), -24);
  } else {
    v = std::ldexp(1.0 + mant / 1024.0, exp - 15);
  }
  return sign ? -v : v;
}

TEST(Fp16, DecodesEveryPatternLikeTheFormula) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float got = f16_to_f32(static_cast<uint16_t>(h));
    const double want = f16_reference(static_cast<uint16_t>(h));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << h;
    } else {
      EXPECT_EQ(static_cast<double>(got), want) << h;
      EXPECT_EQ(std::signbit(got), (h >> 15) != 0) << h;  // -0 stays -0
    }
  }
}

TEST(Fp16, EveryPatternRoundTrips) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const uint16_t back = f32_to_f16(f16_to_f32(static_cast<uint16_t>(h)));
    const bool is_nan = ((h >> 10) & 31) == 31 && (h & 1023) != 0;
    if (is_nan) {
      EXPECT_EQ(back, (h & 0x8000) | 0x7e00) << h;  // canonical quiet NaN, sign kept
    } else {
      EXPECT_EQ(back, h) << h;
    }
  }
}

// Nearest finite f16 (ties to the even pattern) found by exhaustive search over all finite
// patterns, or the infinity / zero the spec prescribes beyond the range.
uint16_t nearest_f16_by_search(float f) {
  const double v = f;
  if (std::fabs(v) >= 65520.0) return v < 0 ? 0xfc00 : 0x7c00;
  uint16_t best = 0;
  double best_err = std::numeric_limits<double>::infinity();
  const uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  for (uint32_t m = 0; m < 0x7c00; ++m) {  // magnitudes, ascending
    const double err = std::fabs(std::fabs(v) - f16_reference(static_cast<uint16_t>(m)));
    if (err < best_err || (err == best_err && (m & 1) == 0)) {
      best_err = err;
      best = static_cast<uint16_t>(m);
    }
  }
  return sign | best;
}

TEST(Fp16, EncodesToNearestEven) {
  std::vector<float> cases = {
      0.0f,
      -0.0f,
      1.0f,
      -2.5f,
      65504.0f,
      65519.0f,
      65520.0f,
      -65520.0f,
      1e6f,
      1.0f + 0x1p-11f,             // halfway between 1 and 1 + 2^-10: ties to even (1)
      1.0f + 3 * 0x1p-11f,         // halfway between 1 + 2^-10 and 1 + 2^-9: ties to even (up)
      1.0f + 0x1p-11f + 0x1p-20f,  // just above the tie: rounds up
      0x1p-14f,                    // smallest normal
      0x1p-14f - 0x1p-25f,         // rounds up into the smallest normal
      0x1p-24f,                    // smallest subnormal
      0x1p-25f,                    // half of it: ties to even (zero)
      0x1p-25f + 0x1p-40f,         // just above half: smallest subnormal
      3 * 0x1p-25f,                // 1.5 subnormal units: ties to even (2 units)
      5 * 0x1p-25f,                // 2.5 units: ties to even (2 units)
      0x1p-30f,
      1e-10f,
      std::numeric_limits<float>::denorm_min(),
  };
  std::mt19937 rng(7);
  std::uniform_int_distribution<uint32_t> bits(0, 0x7f7fffff);
  for (int i = 0; i < 300; ++i) {
    // Random magnitudes concentrated on the f16 range, both signs.
    int exponent;
    const float mantissa = std::frexp(std::bit_cast<float>(bits(rng)), &exponent);
    const float f = std::ldexp(mantissa, static_cast<int>(rng() % 44) - 28);
    cases.push_back(rng() & 1 ? f : -f);
  }
  for (float f : cases) EXPECT_EQ(f32_to_f16(f), nearest_f16_by_search(f)) << f;
}

TEST(Fp16, SpecialValuesEncode) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(f32_to_f16(inf), 0x7c00);
  EXPECT_EQ(f32_to_f16(-inf), 0xfc00);
  EXPECT_EQ(f32_to_f16(std::numeric_limits<float>::quiet_NaN()), 0x7e00);
  EXPECT_EQ(f32_to_f16(-std::numeric_limits<float>::quiet_NaN()), 0xfe00);
  EXPECT_EQ(f32_to_f16(-0.0f), 0x8000);
  EXPECT_EQ(f32_to_f16(-1e-30f), 0x8000);
}

TEST(Fp16, SubnormalsDecodeToMultiplesOfTwoToMinus24) {
  for (uint16_t m = 1; m < 1024; ++m) {
    EXPECT_EQ(f16_to_f32(m), static_cast<float>(m) / 16777216.0f);
    EXPECT_EQ(f16_to_f32(static_cast<uint16_t>(0x8000 | m)), -static_cast<float>(m) / 16777216.0f);
  }
}

TEST(Bf16, DecodeIsTheUpperHalf) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float got = bf16_to_f32(static_cast<uint16_t>(h));
    EXPECT_EQ(std::bit_cast<uint32_t>(got), h << 16);
  }
}

TEST(Bf16, EveryPatternRoundTrips) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const uint16_t back = f32_to_bf16(bf16_to_f32(static_cast<uint16_t>(h)));
    const bool is_nan = ((h >> 7) & 255) == 255 && (h & 127) != 0;
    if (is_nan) {
      EXPECT_EQ(back, h | 0x40) << h;  // quieted, sign and payload kept
    } else {
      EXPECT_EQ(back, h) << h;
    }
  }
}

TEST(Bf16, RoundsToNearestEven) {
  // bf16 keeps 8 significant bits: around 1.0 the step is 2^-7.
  EXPECT_EQ(f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);             // tie, 1.0 is even
  EXPECT_EQ(f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);         // tie, rounds up to even
  EXPECT_EQ(f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);  // above the tie
  EXPECT_EQ(f32_to_bf16(1.0f + 0x1p-8f - 0x1p-20f), 0x3f80);  // below the tie
  EXPECT_EQ(f32_to_bf16(-1.0f - 0x1p-8f - 0x1p-20f), 0xbf81);
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::max()), 0x7f80);  // rounds to +inf
  // Independent check on random values: the result is one of the two neighbours, the closer one.
  std::mt19937 rng(3);
  for (int i = 0; i < 100000; ++i) {
    const float f = std::bit_cast<float>(static_cast<uint32_t>(rng()) & 0x7f7fffffu);
    const uint32_t bits = std::bit_cast<uint32_t>(f);
    const uint32_t down = bits & 0xffff0000u;
    const uint32_t up = down + 0x10000u;
    const double err_down = std::fabs(static_cast<double>(f) - std::bit_cast<float>(down));
    // IEEE rounding treats the step past the largest finite value as reaching 2^128 (= inf).
    const double up_value = up == 0x7f800000u ? std::ldexp(1.0, 128) : std::bit_cast<float>(up);
    const double err_up = std::fabs(static_cast<double>(f) - up_value);
    uint32_t want = err_down < err_up ? down : up;
    if (err_down == err_up) want = ((down >> 16) & 1) ? up : down;
    ASSERT_EQ(f32_to_bf16(f), want >> 16) << f;
  }
}

}  // namespace
}  // namespace magnetar::quant
