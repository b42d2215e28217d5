// Numeric primitives of the DeepSeek V4 forward pass (shared/spec/model.md §3): the FP8 (E4M3) and
// FP4 (E2M1) quantize-dequantize simulations with their power-of-two block scales, the Hadamard
// transform of the indexer, RMSNorm, RoPE with YaRN, and the softmax with a sink logit.
//
// Everything computes in fp32 with the operation order the spec gives, so that results can match
// the official reference bit for bit where the spec pins the rounding. The spec's final bf16
// roundings are left to the callers (this file returns fp32): the FP8/FP4 simulations are exact in
// bf16 anyway, and the other outputs are rounded where the surrounding layer stores them.
//
// Inputs are finite unless a function says otherwise; NaN and infinity are not given a meaning.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace magnetar::cpu {

// 2^ceil(log2(s)) for a positive normal float s <= 2^127, by the exact bit formula of §3.3:
// ceil_log2(s) = E - 127 + (M != 0), with E the biased exponent and M the mantissa field.
float pow2_ceil(float s);

// Rounds to the nearest E4M3 (FN) value, ties to the even code, saturating at +-448 (values past
// 448, infinities included, give 448; there is no overflow to NaN). Subnormals m * 2^-9 are part
// of the grid. The sign of zero follows x.
float round_e4m3(float x);

// Rounds to the nearest E2M1 value in {0, 0.5, 1, 1.5, 2, 3, 4, 6} (signed), ties to the even code
// (0.25 -> 0, 0.75 -> 1, 1.25 -> 1, 1.75 -> 2, 2.5 -> 2, 3.5 -> 4, 5 -> 4), saturating at +-6.
float round_e2m1(float x);

// In-place FP8 quantize-dequantize simulation (§3.3) of v[0..n) in consecutive blocks of `block`
// values (block >= 1). Each block gets its own scale s = pow2_ceil(max(amax, 1e-4) * f32(1/448))
// and every value becomes round_e4m3(v / s) * s. When n % block != 0 the last block is shorter and
// is scaled by its own amax, as if the row were cut there (the spec only uses multiples of the
// block; this is the natural extension and what a per-block kernel does on a ragged tail).
void fp8_simulate(float* v, int64_t n, int64_t block);

// In-place FP4 simulation (§3.4), same block rule as fp8_simulate: per block
// s = pow2_ceil(max(amax, 6 * 2^-126) * f32(1/6)) and v = round_e2m1(v / s) * s.
void fp4_simulate(float* v, int64_t n, int64_t block);

// In-place Sylvester (natural-order) Hadamard transform of v[0..n), n a power of two, scaled by
// f32(n^-1/2) (§3.6): y_i = f32(n^-1/2) * sum_j (-1)^popcount(i & j) x_j, computed by butterflies
// of strides 1, 2, ..., n/2 in fp32 and one scaling multiply at the end.
void hadamard(float* v, int64_t n);

// RMSNorm (§3.2): y_i = w_i * (x_i * r) with r = 1 / sqrt(mean(x^2) + eps), in that multiply
// order; w == nullptr gives the unweighted form y_i = x_i * r. y may alias x. The squares are fp32
// and their sum is accumulated in double and rounded once to fp32 (the value an accurate fp32
// reduction gives, independent of summation order), then divided by n in fp32.
void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps);

// YaRN frequency scaling (§3.7): pairs faster than beta_fast rotations over original_context keep
// their frequency, pairs slower than beta_slow are divided by `factor`, a linear ramp blends the
// pairs in between.
struct YarnParams {
  float factor;               // 16 for V4
  uint64_t original_context;  // 65536 for V4
  float beta_fast;            // 32
  float beta_slow;            // 1
};

// RoPE over `rope_dims` interleaved dims (§3.7): pair j = (x[2j], x[2j+1]) rotates by
// theta_j(pos) = f32(f32(pos) * f_j), one fp32 product, with
//   f_j = f32(1 / f32(base^f32(2j / rope_dims)))                 (the power rounded once)
// and, with YaRN, for low/high from the correction range (computed in double)
//   ramp_j   = clamp(f32(f32(j - low) / f32(high - low)), 0, 1)  (high - low -> 0.001 if equal)
//   smooth_j = f32(1 - ramp_j)
//   f_j      = f32(f32(f32(f_j / factor) * f32(1 - smooth_j)) + f32(f_j * smooth_j)).
// The caller passes the rope slice of a head (the last rope_dims dims in V4).
class RopeTable {
 public:
  // rope_dims: even and >= 2; base > 1; yarn: nullopt for the window-only layers of V4.
  // Throws std::invalid_argument otherwise.
  RopeTable(int rope_dims, float base, std::optional<YarnParams> yarn);

  // f_j for pair j in [0, rope_dims / 2).
  float frequency(int pair) const { return freqs_[pair]; }

  // Rotates x[0..rope_dims) in place by theta_j(pos); `inverse` rotates by -theta_j (the
  // de-rotation of attention outputs). cos and sin are fp32 functions of the fp32 angle, and
  // x0' = x0 c - x1 s, x1' = x0 s + x1 c are fp32 without fused multiply-adds.
  void rotate(float* x, int64_t pos, bool inverse) const;

  int dims() const { return static_cast<int>(freqs_.size()) * 2; }

 private:
  std::vector<float> freqs_;
};

// Softmax with a sink logit (§3.8): p_j = e^(z_j - m) / (sum_k e^(z_k - m) + e^(sink - m)) for
// j < n, with m = max_k z_k (the sink is excluded from the max, as in the official kernel). The
// probabilities sum to less than 1; the rest, e^(sink - m) / den, is the sink's share, which has no
// value vector. The exponentials and the sum (sink term added last) are fp32. p may alias z. n may
// be 0, in which case nothing is read or written.
void softmax_with_sink(const float* z, int64_t n, float sink, float* p);

}  // namespace magnetar::cpu
