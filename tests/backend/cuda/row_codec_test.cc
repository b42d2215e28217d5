// The host/device minifloat functions and the compact row formats against the CPU reference's
// numerics (backend/cpu/numerics.h): same rounding bits, and rows that decode to exactly what the
// CPU's FP8/FP4 simulations produce. Plain C++: these run without a GPU.
#include "backend/cuda/row_codec.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "backend/cpu/numerics.h"
#include "backend/cuda/minifloat.h"

namespace magnetar::gpu {
namespace {

// Floats of every magnitude that matters: random bit patterns (finite), random normals at
// several scales, grid values and the midpoints between them.
std::vector<float> test_values() {
  std::vector<float> v;
  std::mt19937 rng(5);
  for (int i = 0; i < 200000; ++i) {
    const float x = std::bit_cast<float>(static_cast<uint32_t>(rng()));
    if (std::isfinite(x)) v.push_back(x);
  }
  std::normal_distribution<float> normal;
  for (float scale : {1e-6f, 1e-3f, 0.1f, 1.0f, 7.0f, 300.0f, 1e5f}) {
    for (int i = 0; i < 20000; ++i) v.push_back(normal(rng) * scale);
  }
  for (int code = 0; code < 256; ++code) {
    if ((code & 0x7f) == 0x7f) continue;
    const float q = e4m3_value(static_cast<uint8_t>(code));
    v.push_back(q);
    v.push_back(std::nextafter(q, 1000.0f));
    v.push_back(std::nextafter(q, -1000.0f));
  }
  for (float m : {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f, 448.0f, 464.0f, 6.0f, 7.0f}) {
    v.push_back(m);
    v.push_back(-m);
  }
  v.push_back(0.0f);
  v.push_back(-0.0f);
  return v;
}

TEST(Minifloat, RoundingMatchesCpuBits) {
  for (float x : test_values()) {
    ASSERT_EQ(std::bit_cast<uint32_t>(round_e4m3(x)), std::bit_cast<uint32_t>(cpu::round_e4m3(x)))
        << x;
    ASSERT_EQ(std::bit_cast<uint32_t>(round_e2m1(x)), std::bit_cast<uint32_t>(cpu::round_e2m1(x)))
        << x;
    const float a = std::fabs(x);
    if (a >= 0x1p-126f && a <= 0x1p126f) {
      ASSERT_EQ(pow2_ceil(a), cpu::pow2_ceil(a)) << a;
    }
  }
}

// Every E4M3 code and E2M1 nibble decodes to a grid value that encodes back to the same code.
TEST(Minifloat, CodesRoundTrip) {
  for (int code = 0; code < 256; ++code) {
    if ((code & 0x7f) == 0x7f) continue;  // NaN
    const float q = e4m3_value(static_cast<uint8_t>(code));
    EXPECT_EQ(cpu::round_e4m3(q), q) << code;
    EXPECT_EQ(e4m3_code(q), code) << code;
  }
  const float magnitudes[8] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};
  for (int nibble = 0; nibble < 16; ++nibble) {
    const float q = e2m1_value(static_cast<uint8_t>(nibble));
    EXPECT_EQ(std::fabs(q), magnitudes[nibble & 7]) << nibble;
    EXPECT_EQ(std::signbit(q), (nibble & 8) != 0) << nibble;
    EXPECT_EQ(e2m1_code(q), nibble) << nibble;
  }
}

std::vector<float> random_row(int n, float scale, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = normal(rng);
  return v;
}

// An encoded row decodes to exactly the CPU's simulated values: FP8 on the first head_dim − rope
// dims of a KV row (the rest untouched), FP4 on a whole indexer row.
TEST(RowCodec, DecodesToTheCpuSimulation) {
  struct Case {
    RowCodec codec;
    bool fp4;
  };
  const Case cases[] = {{kv_row_codec(512, 64, true), false},
                        {kv_row_codec(128, 64, true), false},
                        {kv_row_codec(136, 64, true), false},  // a ragged last block (72 dims)
                        {indexer_row_codec(128, true), true},
                        {indexer_row_codec(64, true), true}};
  for (const Case& c : cases) {
    EXPECT_EQ(c.codec.row_bytes() % 4, 0);
    for (uint32_t seed = 0; seed < 200; ++seed) {
      const float scale = std::ldexp(1.0f, static_cast<int>(seed % 40) - 25);
      std::vector<float> row = random_row(c.codec.dims, scale, seed);
      if (seed % 7 == 0) row[seed % row.size()] = -0.0f;
      std::vector<float> expected = row;
      if (c.fp4) {
        cpu::fp4_simulate(expected.data(), c.codec.quant_dims, 32);
      } else {
        cpu::fp8_simulate(expected.data(), c.codec.quant_dims, 64);
      }
      std::vector<uint8_t> bytes(static_cast<size_t>(c.codec.row_bytes()), 0xee);
      c.codec.encode(row.data(), bytes.data());
      for (int d = 0; d < c.codec.dims; ++d) {
        ASSERT_EQ(std::bit_cast<uint32_t>(c.codec.value(bytes.data(), d)),
                  std::bit_cast<uint32_t>(expected[d]))
            << "dims " << c.codec.dims << ", seed " << seed << ", dim " << d;
      }
      // A simulated row is on the grid: encoding it again is lossless (how states are imported).
      std::vector<uint8_t> again(bytes.size());
      c.codec.encode(expected.data(), again.data());
      for (int d = 0; d < c.codec.dims; ++d) {
        ASSERT_EQ(std::bit_cast<uint32_t>(c.codec.value(again.data(), d)),
                  std::bit_cast<uint32_t>(expected[d]));
      }
    }
  }
}

TEST(RowCodec, PlainRowsAreFloat32) {
  const RowCodec codec = kv_row_codec(128, 64, false);
  EXPECT_EQ(codec.row_bytes(), 128 * 4);
  std::vector<float> row = random_row(128, 3.0f, 1);
  std::vector<uint8_t> bytes(static_cast<size_t>(codec.row_bytes()));
  codec.encode(row.data(), bytes.data());
  for (int d = 0; d < 128; ++d) EXPECT_EQ(codec.value(bytes.data(), d), row[d]);
}

// All-zero bytes, the initial window of a fresh sequence, read as +0 in both formats.
TEST(RowCodec, ZeroBytesAreZeros) {
  for (const RowCodec& codec :
       {kv_row_codec(512, 64, true), indexer_row_codec(128, true), kv_row_codec(512, 64, false)}) {
    std::vector<uint8_t> bytes(static_cast<size_t>(codec.row_bytes()), 0);
    for (int d = 0; d < codec.dims; ++d) {
      EXPECT_EQ(std::bit_cast<uint32_t>(codec.value(bytes.data(), d)), 0u);
    }
  }
}

// Compact sizes: the Flash KV row is 712 bytes instead of 2048, the indexer row 68 instead of 512.
TEST(RowCodec, Sizes) {
  EXPECT_EQ(kv_row_codec(512, 64, true).row_bytes(), 448 + 8 + 256);
  EXPECT_EQ(indexer_row_codec(128, true).row_bytes(), 64 + 4);
}

}  // namespace
}  // namespace magnetar::gpu
