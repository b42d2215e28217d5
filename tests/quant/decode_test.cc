// Hand-built blocks of every format decode to the values the spec formulas give
// (shared/spec/gguf.md §4.2 - §4.6, §4.8). Expected values are computed here from the formulas,
// with scales chosen as exact binary fractions so that the comparisons can be exact.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

#include "quant/blocks.h"
#include "quant/iq2xxs_tables.h"
#include "quant/quant.h"

namespace magnetar::quant {
namespace {

constexpr uint16_t kF16ThreeQuarters = 0x3a00;  // exponent 14, mantissa 512: 1.5 * 2^-1
constexpr uint16_t kF16Sixteenth = 0x2c00;      // exponent 11: 2^-4
constexpr float kThreeQuarters = 0.75f;
constexpr float kSixteenth = 0.0625f;

std::vector<float> decode(GgmlType type, const void* src, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  dequantize_row(type, src, out.data(), n);
  return out;
}

TEST(Decode, F32IsACopy) {
  const std::vector<float> x = {1.5f, -0.0f, 3e-40f, -7e30f};
  const std::vector<float> y = decode(GgmlType::kF32, x.data(), 4);
  for (int i = 0; i < 4; ++i)
    EXPECT_EQ(std::bit_cast<uint32_t>(y[i]), std::bit_cast<uint32_t>(x[i]));
}

TEST(Decode, F16AndBf16) {
  // 0x3c00 = 1, 0xc000 = -2, 0x0001 = 2^-24, 0x7bff = 65504, 0x3555 = (1 + 341/1024) / 4.
  const uint16_t h[] = {0x3c00, 0xc000, 0x0001, 0x7bff, 0x3555};
  const std::vector<float> f = decode(GgmlType::kF16, h, 5);
  EXPECT_EQ(f[0], 1.0f);
  EXPECT_EQ(f[1], -2.0f);
  EXPECT_EQ(f[2], std::ldexp(1.0f, -24));
  EXPECT_EQ(f[3], 65504.0f);
  EXPECT_EQ(f[4], (1.0f + 341.0f / 1024.0f) / 4.0f);
  // bf16 0x3fc0 = 1.5, 0xc2f7 = -(1 + 119/128) * 2^6 = -123.5.
  const uint16_t b[] = {0x3fc0, 0xc2f7};
  const std::vector<float> g = decode(GgmlType::kBF16, b, 2);
  EXPECT_EQ(g[0], 1.5f);
  EXPECT_EQ(g[1], -123.5f);
}

TEST(Decode, Q8_0) {
  BlockQ8_0 blocks[2];
  for (int b = 0; b < 2; ++b) {
    blocks[b].d = b == 0 ? kF16ThreeQuarters : kF16Sixteenth;
    for (int i = 0; i < 32; ++i) blocks[b].qs[i] = static_cast<int8_t>(i * 8 - 128 + b);
  }
  const std::vector<float> y = decode(GgmlType::kQ8_0, blocks, 64);
  for (int i = 0; i < 32; ++i) {
    EXPECT_EQ(y[i], kThreeQuarters * (i * 8 - 128));
    EXPECT_EQ(y[32 + i], kSixteenth * (i * 8 - 127));
  }
}

TEST(Decode, Q8_K) {
  BlockQ8_K block{};
  block.d = -0.375f;
  for (int i = 0; i < 256; ++i) block.qs[i] = static_cast<int8_t>(127 - i);
  const std::vector<float> y = decode(GgmlType::kQ8_K, &block, 256);
  for (int i = 0; i < 256; ++i) EXPECT_EQ(y[i], -0.375f * (127 - i));
}

TEST(Decode, Q2_K) {
  BlockQ2_K block{};
  block.d = kF16ThreeQuarters;
  block.dmin = kF16Sixteenth;
  int code[256];
  for (int s = 0; s < 16; ++s)
    block.scales[s] = static_cast<uint8_t>((s * 5 + 1) % 16 | (15 - s) << 4);
  for (int e = 0; e < 256; ++e) {
    code[e] = (e * 7 + e / 16) % 4;
    // Element e = 128h + 32j + l is bits 2j..2j+1 of qs[32h + l].
    const int h = e / 128;
    const int j = (e % 128) / 32;
    const int l = e % 32;
    block.qs[32 * h + l] |= static_cast<uint8_t>(code[e] << (2 * j));
  }
  const std::vector<float> y = decode(GgmlType::kQ2_K, &block, 256);
  for (int e = 0; e < 256; ++e) {
    const int s = e / 16;
    const float want = kThreeQuarters * ((s * 5 + 1) % 16) * code[e] - kSixteenth * (15 - s);
    EXPECT_EQ(y[e], want) << e;
  }

  // One element by hand: e = 200 -> h = 1, l = 8, j = 2 (bits 4..5 of qs[40]), sub-block 12.
  BlockQ2_K one{};
  one.d = kF16ThreeQuarters;
  one.dmin = kF16Sixteenth;
  one.scales[12] = 0x9d;  // scale 13, min 9
  one.qs[40] = 0x20;      // code 2 in bits 4..5
  EXPECT_EQ(decode(GgmlType::kQ2_K, &one, 256)[200], 0.75f * 13 * 2 - 0.0625f * 9);  // 18.9375
  EXPECT_EQ(decode(GgmlType::kQ2_K, &one, 256)[192], 0.75f * 13 * 0 - 0.0625f * 9);  // code 0
}

TEST(Decode, Q4_K) {
  std::mt19937 rng(5);
  BlockQ4_K block{};
  block.d = kF16ThreeQuarters;
  block.dmin = kF16Sixteenth;
  for (uint8_t& b : block.scales) b = static_cast<uint8_t>(rng());
  for (uint8_t& b : block.qs) b = static_cast<uint8_t>(rng());
  const std::vector<float> y = decode(GgmlType::kQ4_K, &block, 256);
  const uint8_t* sc = block.scales;
  for (int e = 0; e < 256; ++e) {
    const int j = e / 32;
    // The spec's 6-bit unpacking, written out independently of the library's helper.
    const int scale = j < 4 ? sc[j] & 63 : (sc[j + 4] & 15) | ((sc[j - 4] >> 6) << 4);
    const int min = j < 4 ? sc[j + 4] & 63 : (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4);
    const int c = e / 64;
    const int w = e % 64;
    const int nibble = w < 32 ? block.qs[32 * c + w] & 15 : block.qs[32 * c + w - 32] >> 4;
    EXPECT_EQ(y[e], kThreeQuarters * scale * nibble - kSixteenth * min) << e;
  }

  // One element by hand: sub-block 5 with scale 53 = 0b11'0101 and min 42 = 0b10'1010. Its low
  // nibbles live in scales[9] (scale low, min high), the top two bits in scales[1] / scales[5].
  BlockQ4_K one{};
  one.d = kF16ThreeQuarters;
  one.dmin = kF16Sixteenth;
  one.scales[9] = 0xa5;
  one.scales[1] = 0xc0;
  one.scales[5] = 0x80;
  // Element 167 = 64 * 2 + 39: chunk 2, high nibble of qs[64 + 7].
  one.qs[71] = 0xb3;
  EXPECT_EQ(decode(GgmlType::kQ4_K, &one, 256)[167], 0.75f * 53 * 11 - 0.0625f * 42);  // 434.625
  EXPECT_EQ(decode(GgmlType::kQ4_K, &one, 256)[135], 0.0f);  // sub-block 4: scale and min 0
}

TEST(Decode, Iq2xxs) {
  BlockIQ2_XXS block{};
  block.d = kF16ThreeQuarters;
  // Group 1: grid indices 1, 2, 200, 255; sign indices 0, 1, 127, 0x55; group scale 9.
  const uint8_t grid[4] = {1, 2, 200, 255};
  const uint32_t sign_index[4] = {0, 1, 127, 0x55};
  uint32_t word = 9u << 28;
  for (int k = 0; k < 4; ++k) word |= sign_index[k] << (7 * k);
  std::memcpy(block.qs + 8, grid, 4);
  std::memcpy(block.qs + 12, &word, 4);
  const std::vector<float> y = decode(GgmlType::kIQ2_XXS, &block, 256);

  const float db = 0.75f * (0.5f + 9) * 0.25f;  // 1.78125
  // By hand: grid entry 1 = 0x080808080808082b, weight 0 is 0x2b = 43, sign index 0: positive.
  EXPECT_EQ(y[32], db * 43);
  // Grid entry 2 = 0x0808080808081919: weight 0 is 25; sign index 1 expands to 1 | 1 << 7
  // (odd popcount), so weights 0 and 7 are negative.
  EXPECT_EQ(y[40], -db * 25);
  EXPECT_EQ(y[47], -db * 8);
  EXPECT_EQ(y[41], db * 25);
  for (int k = 0; k < 4; ++k) {
    // The 8th sign is the parity of the 7 stored ones.
    const uint32_t signs = sign_index[k] | (std::popcount(sign_index[k]) & 1) << 7;
    for (int i = 0; i < 8; ++i) {
      const float magnitude = static_cast<float>((kIq2xxsGrid[grid[k]] >> (8 * i)) & 0xff);
      EXPECT_EQ(y[32 + 8 * k + i], (signs >> i & 1 ? -db : db) * magnitude) << k << " " << i;
    }
  }
  // Groups left all-zero (grid index 0, signs 0, scale 0) decode to +d * 0.5 * 0.25 * 8 = +d.
  for (int e = 0; e < 32; ++e) EXPECT_EQ(y[e], 0.75f);
  for (int e = 64; e < 256; ++e) EXPECT_EQ(y[e], 0.75f);
}

TEST(Decode, RejectsBadLengthsAndTypes) {
  std::vector<uint8_t> buf(1024);
  std::vector<float> out(512);
  EXPECT_THROW(dequantize_row(GgmlType::kQ8_0, buf.data(), out.data(), 33), std::invalid_argument);
  EXPECT_THROW(dequantize_row(GgmlType::kQ2_K, buf.data(), out.data(), 128), std::invalid_argument);
  EXPECT_THROW(dequantize_row(GgmlType::kQ4_0, buf.data(), out.data(), 32), std::invalid_argument);
  EXPECT_THROW(dequantize_row(GgmlType::kI32, buf.data(), out.data(), 4), std::invalid_argument);
  EXPECT_FALSE(can_dequantize(GgmlType::kQ6_K));
  EXPECT_TRUE(can_dequantize(GgmlType::kQ8_K));
  dequantize_row(GgmlType::kIQ2_XXS, buf.data(), out.data(), 0);  // empty rows are fine
}

}  // namespace
}  // namespace magnetar::quant
