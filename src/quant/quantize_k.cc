// Q2_K and Q4_K encoders (shared/spec/gguf.md §4.4, §4.5, §4.9).
//
// Both formats store, per 256-value super-block, an f16 scale d and f16 offset scale dmin, and per
// sub-block a small integer scale sc and min m, so value = d * sc * code - dmin * m. Encoding is
// two-level: fit a float (scale, offset) per sub-block, quantize those sub-block parameters
// against the super-block's d / dmin, then re-derive the codes against the quantized parameters so
// that rounding of the scales is compensated where possible.
#include <algorithm>
#include <cmath>

#include "quant/codecs.h"
#include "quant/encode_helpers.h"
#include "quant/fp16.h"

namespace magnetar::quant::detail {
namespace {

float sum_of_squares(const float* x, int n) {
  float sum = 0;
  for (int i = 0; i < n; ++i) sum += x[i] * x[i];
  return sum;
}

// Importance weights of §4.9: qw_i * sqrt(sigma2 + x_i^2), plus their sum.
float importance_weights(const float* x, const float* qw, float sigma2, int n, float* w) {
  float sum = 0;
  for (int i = 0; i < n; ++i) {
    w[i] = qw[i] * std::sqrt(sigma2 + x[i] * x[i]);
    sum += w[i];
  }
  return sum;
}

// Quantizes the positive sub-block parameters v[0..n) to integers in [0, nmax] against their
// maximum (the reference paths): returns the float step, max / nmax, or 0 with all codes 0 when
// every parameter is 0.
float quantize_against_max(const float* v, int n, int nmax, uint8_t* codes) {
  float max = 0;
  for (int j = 0; j < n; ++j) max = std::max(max, v[j]);
  if (!(max > 0)) {
    std::fill(codes, codes + n, 0);
    return 0;
  }
  const float inv = nmax / max;
  for (int j = 0; j < n; ++j) {
    codes[j] = static_cast<uint8_t>(std::clamp(nearest_int(inv * v[j]), 0, nmax));
  }
  return max / nmax;
}

// Re-derives the codes of one sub-block of `n` values from the stored (f16) parameters. A
// sub-block whose effective scale is 0 keeps the codes of its float fit.
void requantize(const float* x, int n, int nmax, float d, float dmin, uint8_t* L) {
  if (d == 0) return;
  for (int i = 0; i < n; ++i) {
    L[i] = static_cast<uint8_t>(std::clamp(nearest_int((x[i] + dmin) / d), 0, nmax));
  }
}

void encode_q2_k_block(const float* x, const float* qw, BlockQ2_K& y) {
  uint8_t L[256];
  uint8_t scratch[16];
  float w[16];
  float scales[16];
  float mins[16];
  uint8_t sc[16];
  uint8_t m[16];
  float d;
  float dmin;
  if (qw == nullptr) {
    for (int j = 0; j < 16; ++j) {
      for (int i = 0; i < 16; ++i) w[i] = std::fabs(x[16 * j + i]);
      scales[j] = make_qkx(16, 3, x + 16 * j, w, L + 16 * j, &mins[j], scratch, -0.5f, 0.1f, 15,
                           /*use_mad=*/true);
    }
    y.d = f32_to_f16(quantize_against_max(scales, 16, 15, sc));
    y.dmin = f32_to_f16(quantize_against_max(mins, 16, 15, m));
  } else {
    const float sigma2 = sum_of_squares(x, 256) / 256;
    float sw[16];
    for (int j = 0; j < 16; ++j) {
      sw[j] = importance_weights(x + 16 * j, qw + 16 * j, sigma2, 16, w);
      scales[j] = make_qkx(16, 3, x + 16 * j, w, L + 16 * j, &mins[j], scratch, -0.9f, 0.05f, 36,
                           /*use_mad=*/false);
    }
    // The sub-block parameters are themselves fitted, weighted by each sub-block's importance.
    y.d = f32_to_f16(make_qp(16, 15, scales, sw, sc));
    y.dmin = f32_to_f16(make_qp(16, 15, mins, sw, m));
  }
  d = f16_to_f32(y.d);
  dmin = f16_to_f32(y.dmin);
  for (int j = 0; j < 16; ++j) {
    y.scales[j] = static_cast<uint8_t>(sc[j] | (m[j] << 4));
    requantize(x + 16 * j, 16, 3, d * sc[j], dmin * m[j], L + 16 * j);
  }
  // Element 128h + 32k + l goes to bits 2k..2k+1 of qs[32h + l].
  for (int h = 0; h < 2; ++h) {
    for (int l = 0; l < 32; ++l) {
      const uint8_t* q = L + 128 * h + l;
      y.qs[32 * h + l] = static_cast<uint8_t>(q[0] | (q[32] << 2) | (q[64] << 4) | (q[96] << 6));
    }
  }
}

void encode_q4_k_block(const float* x, const float* qw, BlockQ4_K& y) {
  uint8_t L[256];
  uint8_t scratch[32];
  float w[32];
  float scales[8];
  float mins[8];
  uint8_t sc[8];
  uint8_t m[8];
  if (qw == nullptr) {
    for (int j = 0; j < 8; ++j) {
      const float* xs = x + 32 * j;
      const float av_x = std::sqrt(sum_of_squares(xs, 32) / 32);
      for (int i = 0; i < 32; ++i) w[i] = av_x + std::fabs(xs[i]);
      scales[j] = make_qkx(32, 15, xs, w, L + 32 * j, &mins[j], scratch, -1.0f, 0.1f, 20,
                           /*use_mad=*/false);
    }
    y.d = f32_to_f16(quantize_against_max(scales, 8, 63, sc));
    y.dmin = f32_to_f16(quantize_against_max(mins, 8, 63, m));
  } else {
    const float sigma2 = 2 * sum_of_squares(x, 256) / 256;
    float sw[8];
    for (int j = 0; j < 8; ++j) {
      sw[j] = importance_weights(x + 32 * j, qw + 32 * j, sigma2, 32, w);
      scales[j] = make_qkx(32, 15, x + 32 * j, w, L + 32 * j, &mins[j], scratch, -0.9f, 0.05f, 36,
                           /*use_mad=*/false);
    }
    y.d = f32_to_f16(make_qp(8, 63, scales, sw, sc));
    y.dmin = f32_to_f16(make_qp(8, 63, mins, sw, m));
  }
  // Sub-blocks 0..3 take 6 bits of scales[j] / scales[j + 4]; 4..7 split theirs into a nibble of
  // scales[j + 4] and two spare top bits of scales[j - 4] / scales[j] (see q4_k_scale_min).
  for (int j = 0; j < 4; ++j) {
    y.scales[j] = sc[j];
    y.scales[j + 4] = m[j];
  }
  for (int j = 4; j < 8; ++j) {
    y.scales[j + 4] = static_cast<uint8_t>((sc[j] & 15) | ((m[j] & 15) << 4));
    y.scales[j - 4] |= static_cast<uint8_t>((sc[j] >> 4) << 6);
    y.scales[j] |= static_cast<uint8_t>((m[j] >> 4) << 6);
  }
  const float d = f16_to_f32(y.d);
  const float dmin = f16_to_f32(y.dmin);
  for (int j = 0; j < 8; ++j) {
    uint8_t sc_j;
    uint8_t m_j;
    q4_k_scale_min(y.scales, j, &sc_j, &m_j);
    requantize(x + 32 * j, 32, 15, d * sc_j, dmin * m_j, L + 32 * j);
  }
  // Element 64c + l goes to the low nibble of qs[32c + l], element 64c + 32 + l to the high one.
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l) {
      y.qs[32 * c + l] = static_cast<uint8_t>(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
    }
  }
}

}  // namespace

void quantize_q2_k(const float* x, BlockQ2_K* y, int64_t nb, const float* qw) {
  for (int64_t b = 0; b < nb; ++b) {
    encode_q2_k_block(x + 256 * b, qw != nullptr ? qw + 256 * b : nullptr, y[b]);
  }
}

void quantize_q4_k(const float* x, BlockQ4_K* y, int64_t nb, const float* qw) {
  for (int64_t b = 0; b < nb; ++b) {
    encode_q4_k_block(x + 256 * b, qw != nullptr ? qw + 256 * b : nullptr, y[b]);
  }
}

}  // namespace magnetar::quant::detail
