// Per-format block encoders and decoders behind the public entry points of quant.h.
//
// Internal to src/quant. Every function works on `nb` whole blocks (nb * kBlockElems values) and
// is re-entrant: no function keeps state between calls except the IQ2_XXS encoder's read-only
// neighbour tables, which are built once under std::call_once.
#pragma once

#include <cstdint>

#include "quant/blocks.h"

namespace magnetar::quant::detail {

void dequantize_q8_0(const BlockQ8_0* x, float* y, int64_t nb);
void dequantize_q8_k(const BlockQ8_K* x, float* y, int64_t nb);
void dequantize_q2_k(const BlockQ2_K* x, float* y, int64_t nb);
void dequantize_q4_k(const BlockQ4_K* x, float* y, int64_t nb);
void dequantize_iq2_xxs(const BlockIQ2_XXS* x, float* y, int64_t nb);

// Q8_0 (§4.3): d = amax / 127 stored as f16, codes round(x / d) half away from zero.
void quantize_q8_0(const float* x, BlockQ8_0* y, int64_t nb);
// Q8_K (§4.8): d = -max / 127 where max is the element of largest magnitude; codes round to even.
void quantize_q8_k(const float* x, BlockQ8_K* y, int64_t nb);
// The activation side of Q8_0 dot products (§4.8): d = amax / 127 kept as f32, lrintf codes.
void quantize_q8_0f(const float* x, BlockQ8_0F* y, int64_t nb);

// Q2_K and Q4_K (§4.4, §4.5): `qw` (nb * 256 importance values, one per column) selects the
// importance-weighted encoder; nullptr selects the reference encoder.
void quantize_q2_k(const float* x, BlockQ2_K* y, int64_t nb, const float* qw);
void quantize_q4_k(const float* x, BlockQ4_K* y, int64_t nb, const float* qw);

// IQ2_XXS (§4.6): `qw` (nb * 256 importance values) is required.
void quantize_iq2_xxs(const float* x, BlockIQ2_XXS* y, int64_t nb, const float* qw);

}  // namespace magnetar::quant::detail
