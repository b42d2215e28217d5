// Scale-fitting helpers shared by the K-quant and IQ2_XXS encoders (shared/spec/gguf.md §4.7).
//
// ds4's quantizer (like ggml's) fits block scales with these three searches; the exact order of
// candidates, the tie-breaking (strict improvements only) and the rounding all decide which bytes
// come out, so they follow the spec step by step rather than being "improved".
#pragma once

#include <bit>
#include <cstdint>

namespace magnetar::quant::detail {

// Rounds to nearest, ties to even, for |v| <= 4194303. Adding 1.5 * 2^23 moves v into the binade
// where one ulp is 1, so the float addition itself does the rounding (in the default rounding
// mode, which the library never changes); the integer is then read off the low mantissa bits.
// Unlike lrintf this never leaves the FP unit and does not depend on libm.
inline int nearest_int(float v) {
  const float biased = v + 12582912.0f;
  return static_cast<int>(std::bit_cast<uint32_t>(biased) & 0x7fffffu) - 0x400000;
}

// Fits x_i ~ scale * L_i - offset with codes L_i in [0, nmax] (asymmetric quantization with a
// non-negative offset), minimising sum w_i * err(residual) where err is |.| when use_mad and the
// square otherwise. Starts from the min/max fit, then tries nstep + 1 trial inverse scales
// (rmin + rdelta * is + nmax) / (max - min), each refined by weighted least squares, keeping
// strict improvements. Writes the codes to L, the offset to *offset, returns the scale. `scratch`
// holds n bytes of trial codes. This is the spec's make_qkx2; its make_qkx3 differs only in the
// degenerate-range test (max <= min instead of max == min), which cannot tell apart any input
// because min <= max always holds (and both tests are false for NaN), so one routine serves both.
float make_qkx(int n, int nmax, const float* x, const float* w, uint8_t* L, float* offset,
               uint8_t* scratch, float rmin, float rdelta, int nstep, bool use_mad);

// Fits x_i ~ scale * L_i with codes L_i in [0, nmax] for (normally) non-negative x, minimising
// sum w_i * (x_i - scale * L_i)^2: picks the best of nine trial inverse scales around nmax / max,
// then refines the codes one at a time (up to five passes) and returns the least-squares scale for
// the final codes (0 when max(x) < 1e-15 or every weighted code is zero). Writes the codes to L.
float make_qp(int n, int nmax, const float* x, const float* w, uint8_t* L);

}  // namespace magnetar::quant::detail
