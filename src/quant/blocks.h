// Byte layouts of the quantized blocks (shared/spec/gguf.md §4.1, §4.8).
//
// Each struct mirrors one block exactly as it lies in a GGUF file (or, for the activation formats,
// in memory), so a row of n values is an array of n / kBlockElems structs with no padding. f16
// fields hold raw binary16 bits (see fp16.h). Multi-byte fields are little-endian in files; the
// structs are only valid on a little-endian host, which the static_assert below enforces.
#pragma once

#include <bit>
#include <cstdint>

namespace magnetar::quant {

static_assert(std::endian::native == std::endian::little, "block layouts assume little-endian");

// Q8_0: 32 weights = f16 scale d and 32 signed codes; value = d * q.
struct BlockQ8_0 {
  static constexpr int kBlockElems = 32;
  uint16_t d;
  int8_t qs[32];
};
static_assert(sizeof(BlockQ8_0) == 34);

// Q2_K: 256 weights in 16 sub-blocks of 16. scales[s] = 4-bit scale (low nibble) and 4-bit min
// (high nibble) of sub-block s; qs holds 2-bit codes, four per byte (element 128h + 32j + l is
// bits 2j..2j+1 of qs[32h + l]); value = d * scale * q - dmin * min.
struct BlockQ2_K {
  static constexpr int kBlockElems = 256;
  uint8_t scales[16];
  uint8_t qs[64];
  uint16_t d;
  uint16_t dmin;
};
static_assert(sizeof(BlockQ2_K) == 84);

// Q4_K: 256 weights in 8 sub-blocks of 32, each with a 6-bit scale and 6-bit min packed into
// scales[12] (see q4_k_scale_min below); qs holds 4-bit codes, element 64c + l in the
// low nibble and 64c + 32 + l in the high nibble of qs[32c + l]; value = d * sc * q - dmin * m.
struct BlockQ4_K {
  static constexpr int kBlockElems = 256;
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qs[128];
};
static_assert(sizeof(BlockQ4_K) == 144);

// The 6-bit scale and min of Q4_K sub-block j (0..7). Sub-blocks 0..3 use the low 6 bits of
// scales[j] / scales[j + 4]; sub-blocks 4..7 keep their low 4 bits in the nibbles of scales[j + 4]
// and their top 2 bits in the spare bits 6..7 of scales[j - 4] (scale) and scales[j] (min).
inline void q4_k_scale_min(const uint8_t* scales, int j, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = scales[j] & 63;
    *m = scales[j + 4] & 63;
  } else {
    *sc = static_cast<uint8_t>((scales[j + 4] & 15) | ((scales[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((scales[j + 4] >> 4) | ((scales[j] >> 6) << 4));
  }
}

// IQ2_XXS: 256 weights; f16 d then 8 groups (one per 32 weights) of 8 bytes: four grid indices
// (one per 8 weights) followed by a little-endian u32 holding four 7-bit sign indices (bits 7k) and
// a 4-bit group scale s (bits 28..31); value = +-d * (2s + 1) / 8 * grid magnitude.
struct BlockIQ2_XXS {
  static constexpr int kBlockElems = 256;
  uint16_t d;
  uint8_t qs[64];
};
static_assert(sizeof(BlockIQ2_XXS) == 66);

// Q8_K: 256 activation values = f32 scale, int8 codes and the sum of each 16-run of codes (the
// K-quant dot products need those sums to apply the per-sub-block minimums). value = d * q.
struct BlockQ8_K {
  static constexpr int kBlockElems = 256;
  float d;
  int8_t qs[256];
  int16_t bsums[16];
};
static_assert(sizeof(BlockQ8_K) == 292);

// Activation format paired with Q8_0 weights in ds4's CPU path: like Q8_0 but with an f32 scale.
// It is never stored in files and has no ggml type id. value = d * q.
struct BlockQ8_0F {
  static constexpr int kBlockElems = 32;
  float d;
  int8_t qs[32];
};
static_assert(sizeof(BlockQ8_0F) == 36);

}  // namespace magnetar::quant
