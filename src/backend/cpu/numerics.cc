// Numeric primitives of shared/spec/model.md §3; see numerics.h for the definitions.
#include "backend/cpu/numerics.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <numbers>
#include <stdexcept>

namespace magnetar::cpu {
namespace {

// 2^k for k in the normal exponent range [-126, 127], built from the exponent field.
float exp2i(int k) { return std::bit_cast<float>(static_cast<uint32_t>(k + 127) << 23); }

// Rounds x to the nearest value of a sign-magnitude minifloat with `mant_bits` mantissa bits and
// smallest normal exponent `min_exp`, saturating at `max_value` (itself on the grid). Within the
// binade [2^e, 2^(e+1)) the grid spacing is 2^(e - mant_bits); below 2^min_exp the subnormals keep
// the spacing of the smallest binade. Dividing by a power-of-two spacing is exact, so nearbyint (in
// the default round-to-nearest-even mode) rounds the true quotient, and an even quotient is an even
// code because every binade starts at an even multiple of its spacing. A quotient that rounds up to
// the next binade lands on its first value, which is on the grid too.
float round_minifloat(float x, int min_exp, int mant_bits, float max_value) {
  const float a = std::min(std::fabs(x), max_value);
  const int biased_exp = static_cast<int>(std::bit_cast<uint32_t>(a) >> 23);
  const float step = exp2i(std::max(biased_exp - 127, min_exp) - mant_bits);
  return std::copysign(std::nearbyint(a / step) * step, x);
}

// The block loop shared by the FP8 and FP4 simulations (§3.3, §3.4): per block, the power-of-two
// scale from the floored amax times the fp32 reciprocal of the format's maximum (a multiplication,
// not a division, as in the reference), then every value rounded on the scaled grid. s is a power
// of two, so v / s is exact (unless it is far below the smallest code, where it rounds to 0
// anyway) and so is q * s, which has at most 4 significant bits: the result is also exact in bf16.
template <float (*kRound)(float)>
void simulate_blocks(float* v, int64_t n, int64_t block, float amax_floor, float inv_max) {
  if (block < 1) throw std::invalid_argument("quantize simulation: block must be >= 1");
  for (int64_t start = 0; start < n; start += block) {
    const int64_t end = std::min(n, start + block);
    float amax = amax_floor;
    for (int64_t i = start; i < end; ++i) amax = std::max(amax, std::fabs(v[i]));
    const float s = pow2_ceil(amax * inv_max);
    // The rounding saturates, which is the spec's clamp to the format's range.
    for (int64_t i = start; i < end; ++i) v[i] = kRound(v[i] / s) * s;
  }
}

}  // namespace

float pow2_ceil(float s) {
  const uint32_t bits = std::bit_cast<uint32_t>(s);
  const uint32_t biased_exp = bits >> 23;  // s is positive: no sign bit
  const uint32_t round_up = (bits & 0x7fffffu) != 0 ? 1u : 0u;
  return std::bit_cast<float>((biased_exp + round_up) << 23);
}

// E4M3 (FN): 3 mantissa bits, exponent bias 7 (smallest normal 2^-6, subnormals m * 2^-9), largest
// finite 1.75 * 2^8 = 448 (the code above it is NaN).
float round_e4m3(float x) { return round_minifloat(x, -6, 3, 448.0f); }

// E2M1: 1 mantissa bit, exponent bias 1 (smallest normal 1, the subnormal 0.5), largest 1.5 * 4
// = 6.
float round_e2m1(float x) { return round_minifloat(x, 0, 1, 6.0f); }

void fp8_simulate(float* v, int64_t n, int64_t block) {
  simulate_blocks<round_e4m3>(v, n, block, 1e-4f, 1.0f / 448.0f);
}

void fp4_simulate(float* v, int64_t n, int64_t block) {
  simulate_blocks<round_e2m1>(v, n, block, 6.0f * 0x1p-126f, 1.0f / 6.0f);
}

void hadamard(float* v, int64_t n) {
  if (n < 1 || (n & (n - 1)) != 0) throw std::invalid_argument("hadamard: n must be a power of 2");
  // Stage h combines the halves of each 2h-block: afterwards entry i holds the sum over the bits
  // below 2h of j with sign (-1)^popcount(i & j), which after the last stage is the natural-order
  // Sylvester matrix applied to v.
  for (int64_t h = 1; h < n; h *= 2) {
    for (int64_t i = 0; i < n; i += 2 * h) {
      for (int64_t j = i; j < i + h; ++j) {
        const float a = v[j];
        const float b = v[j + h];
        v[j] = a + b;
        v[j + h] = a - b;
      }
    }
  }
  // The reference passes n ** -0.5 from Python (double) to the kernel as an fp32 scale.
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(n)));
  for (int64_t i = 0; i < n; ++i) v[i] *= scale;
}

void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const float square = x[i] * x[i];
    sum += square;
  }
  const float mean = static_cast<float>(sum) / static_cast<float>(n);
  const float r = 1.0f / std::sqrt(mean + eps);
  for (int64_t i = 0; i < n; ++i) {
    const float normalized = x[i] * r;
    y[i] = w == nullptr ? normalized : w[i] * normalized;
  }
}

RopeTable::RopeTable(int rope_dims, float base, std::optional<YarnParams> yarn) {
  if (rope_dims < 2 || rope_dims % 2 != 0) {
    throw std::invalid_argument("RopeTable: rope_dims must be even and >= 2");
  }
  if (!(base > 1.0f)) throw std::invalid_argument("RopeTable: base must be > 1");
  const int pairs = rope_dims / 2;
  freqs_.resize(pairs);
  for (int j = 0; j < pairs; ++j) {
    const float exponent = static_cast<float>(2 * j) / static_cast<float>(rope_dims);
    // The power is taken in double and rounded once: the correctly rounded fp32 power.
    const float power = static_cast<float>(std::pow(static_cast<double>(base), exponent));
    freqs_[j] = 1.0f / power;
  }
  if (!yarn) return;

  const YarnParams& p = *yarn;
  if (!(p.factor > 0.0f) || p.original_context == 0 || !(p.beta_fast > 0.0f) ||
      !(p.beta_slow > 0.0f)) {
    throw std::invalid_argument("RopeTable: YaRN factor, context and betas must be positive");
  }
  // The correction range is computed in double; corr(beta) is the (fractional) pair index whose
  // wavelength fits beta times into the original context.
  const auto corr = [&](double beta) {
    return rope_dims *
           std::log(static_cast<double>(p.original_context) / (beta * 2.0 * std::numbers::pi)) /
           (2.0 * std::log(static_cast<double>(base)));
  };
  const double low = std::max(std::floor(corr(p.beta_fast)), 0.0);
  const double high = std::min(std::ceil(corr(p.beta_slow)), rope_dims - 1.0);
  // An empty ramp is widened by 0.001 (in double) so that the division stays finite.
  const float span = static_cast<float>(low == high ? (high + 0.001) - low : high - low);
  for (int j = 0; j < pairs; ++j) {
    // Every step is its own fp32 operation (the library is built with -ffp-contract=off): the
    // table must match the reference bit for bit, e.g. smooth_16 = 0.899999976, not 0.9.
    const float ramp = std::clamp(static_cast<float>(j - low) / span, 0.0f, 1.0f);
    const float smooth = 1.0f - ramp;
    const float f = freqs_[j];
    const float scaled = (f / p.factor) * (1.0f - smooth);
    const float kept = f * smooth;
    freqs_[j] = scaled + kept;
  }
}

void RopeTable::rotate(float* x, int64_t pos, bool inverse) const {
  const float t = static_cast<float>(pos);
  for (size_t j = 0; j < freqs_.size(); ++j) {
    // One fp32 product, as the reference's fp32 outer(positions, freqs) table: at large positions
    // its rounding is a visible part of the angle and must be reproduced, not avoided.
    const float theta = t * freqs_[j];
    const float c = std::cos(theta);
    const float s = inverse ? -std::sin(theta) : std::sin(theta);
    const float x0 = x[2 * j];
    const float x1 = x[2 * j + 1];
    x[2 * j] = x0 * c - x1 * s;
    x[2 * j + 1] = x0 * s + x1 * c;
  }
}

void softmax_with_sink(const float* z, int64_t n, float sink, float* p) {
  if (n <= 0) return;
  float m = z[0];
  for (int64_t j = 1; j < n; ++j) m = std::max(m, z[j]);
  float den = 0.0f;
  for (int64_t j = 0; j < n; ++j) {
    p[j] = std::exp(z[j] - m);
    den += p[j];
  }
  // When the sink dominates, e^(sink - m) may overflow to infinity; the probabilities then become
  // 0, which is their limit.
  den += std::exp(sink - m);
  for (int64_t j = 0; j < n; ++j) p[j] /= den;
}

}  // namespace magnetar::cpu
