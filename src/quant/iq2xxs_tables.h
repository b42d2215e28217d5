// IQ2_XXS lookup tables (shared/spec/gguf.md §4.6; data file data/iq2xxs_tables.txt).
//
// These are part of the on-disk format: an IQ2_XXS block stores only indices into them.
//   * kIq2xxsGrid[g]: the 256 allowed magnitude patterns of 8 weights; byte i (bits 8i..8i+7) is
//     the magnitude of weight i, one of 8, 25, 43: roughly 8 times the odd levels 1, 3, 5 that the
//     encoder fits, hence the 1/8 in the decoded group scale d*(2s+1)/8.
//   * kIq2xsSigns[s]: expands a stored 7-bit sign index into the 8 sign bits of a group; bit 7 is
//     the parity of bits 0..6, so every group has an even number of negated weights.
//   * kIq2xxsKgrid[g]: the encoder's compact form of the same patterns: 2-bit levels l_i in
//     {0, 1, 2} packed little-endian (bits 2i..2i+1); magnitude byte i = {8, 25, 43}[l_i].
#pragma once

#include <cstdint>

namespace magnetar::quant {

extern const uint64_t kIq2xxsGrid[256];
extern const uint8_t kIq2xsSigns[128];
extern const uint16_t kIq2xxsKgrid[256];

// kIq2xsSigns spread to whole bytes: mask[s] has byte i = 0xff where bit i of kIq2xsSigns[s] is
// set, else 0, so that kernels can negate 8 values with one mask (SIMD sign, or (m ^ mask) + 1).
// (A struct around a plain array: no member functions, so SIMD translation units can use it.)
struct Iq2xsSignMasks {
  uint64_t mask[128];
};
extern const Iq2xsSignMasks kIq2xsSignMasks;

}  // namespace magnetar::quant
