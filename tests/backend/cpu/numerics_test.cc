// Numeric primitives (shared/spec/model.md §3) against independent computations: brute-force
// nearest searches over the decoded FP8/FP4 code tables, double-precision references, the explicit
// Hadamard matrix and the spec's published RoPE frequency table.
#include "backend/cpu/numerics.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numbers>
#include <random>
#include <stdexcept>
#include <vector>

namespace magnetar::cpu {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// One value of a small float format and its code (byte or nibble).
struct Code {
  double value;
  int code;
};

// Every finite E4M3FN byte decoded per gguf.md §4.10: sign bit 7, exponent bits 3-6 (bias 7),
// mantissa bits 0-2, exponent 0 subnormal man * 2^-9; 0x7F and 0xFF (NaN) left out.
std::vector<Code> e4m3_codes() {
  std::vector<Code> codes;
  for (int b = 0; b < 256; ++b) {
    if ((b & 0x7f) == 0x7f) continue;
    const int exp = (b >> 3) & 15;
    const int man = b & 7;
    const double mag = exp == 0 ? std::ldexp(man, -9) : std::ldexp(1.0 + man / 8.0, exp - 7);
    codes.push_back({(b & 0x80) ? -mag : mag, b});
  }
  return codes;
}

// Every E2M1 nibble (gguf.md §4.10): bit 3 the sign, magnitudes 0, 0.5, 1, 1.5, 2, 3, 4, 6.
std::vector<Code> e2m1_codes() {
  const double magnitudes[8] = {0, 0.5, 1, 1.5, 2, 3, 4, 6};
  std::vector<Code> codes;
  for (int nibble = 0; nibble < 16; ++nibble) {
    const double mag = magnitudes[nibble & 7];
    codes.push_back({(nibble & 8) ? -mag : mag, nibble});
  }
  return codes;
}

// The nearest code value by exhaustive search, a tie going to the even code. Out-of-range inputs
// get the largest magnitude, i.e. this is the saturating rounding.
double nearest(const std::vector<Code>& codes, double x) {
  const Code* best = &codes[0];
  double best_dist = std::fabs(x - best->value);
  for (const Code& c : codes) {
    const double dist = std::fabs(x - c.value);
    if (dist < best_dist || (dist == best_dist && (c.code & 1) == 0 && (best->code & 1) != 0)) {
      best = &c;
      best_dist = dist;
    }
  }
  return best->value;
}

// The smallest power of two >= s, through frexp (s = m * 2^e with m in [0.5, 1)).
double ceil_pow2(double s) {
  int e = 0;
  const double m = std::frexp(s, &e);
  return m == 0.5 ? std::ldexp(1.0, e - 1) : std::ldexp(1.0, e);
}

// Inputs that probe a rounding grid: every grid value, every midpoint (the ties) and the floats
// right next to each midpoint, plus random magnitudes spread over the grid's range and beyond.
std::vector<float> probe_inputs(const std::vector<Code>& codes, double max_value) {
  std::vector<double> values;
  for (const Code& c : codes) values.push_back(c.value);
  std::sort(values.begin(), values.end());
  values.erase(std::unique(values.begin(), values.end()), values.end());
  std::vector<float> inputs;
  for (size_t i = 0; i < values.size(); ++i) {
    inputs.push_back(static_cast<float>(values[i]));
    if (i + 1 == values.size()) break;
    const float mid = static_cast<float>((values[i] + values[i + 1]) / 2);  // exact in fp32
    inputs.push_back(mid);
    inputs.push_back(std::nextafter(mid, kInf));
    inputs.push_back(std::nextafter(mid, -kInf));
  }
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> log2_mag(-14.0, std::log2(max_value) + 3.0);
  for (int i = 0; i < 20000; ++i) {
    const float mag = static_cast<float>(std::exp2(log2_mag(rng)));
    inputs.push_back(i % 2 ? -mag : mag);
  }
  return inputs;
}

TEST(Pow2Ceil, ExactPowersAreKept) {
  for (int k = -126; k <= 127; ++k) {
    const float p = std::ldexp(1.0f, k);
    EXPECT_EQ(pow2_ceil(p), p) << k;
  }
}

TEST(Pow2Ceil, JustAboveAPowerGoesToTheNextPower) {
  for (int k = -126; k <= 126; ++k) {
    const float p = std::ldexp(1.0f, k);
    EXPECT_EQ(pow2_ceil(std::nextafter(p, kInf)), 2.0f * p) << k;
    // Just below a power (still normal) rounds up to that power.
    if (k > -126) {
      EXPECT_EQ(pow2_ceil(std::nextafter(p, 0.0f)), p) << k;
    }
  }
}

TEST(Pow2Ceil, MatchesFrexpOnRandomNormals) {
  std::mt19937 rng(1);
  // Biased exponents 1..253 keep s normal and the result at most 2^127.
  std::uniform_int_distribution<uint32_t> exp_field(1, 253);
  std::uniform_int_distribution<uint32_t> man_field(0, 0x7fffff);
  for (int i = 0; i < 100000; ++i) {
    const float s = std::bit_cast<float>(exp_field(rng) << 23 | man_field(rng));
    EXPECT_EQ(static_cast<double>(pow2_ceil(s)), ceil_pow2(s)) << s;
  }
}

TEST(RoundE4m3, MatchesBruteForceNearestWithTiesToEvenCode) {
  const std::vector<Code> codes = e4m3_codes();
  ASSERT_EQ(codes.size(), 254u);
  for (float x : probe_inputs(codes, 448.0)) {
    EXPECT_EQ(static_cast<double>(round_e4m3(x)), nearest(codes, x)) << x;
  }
}

TEST(RoundE4m3, SaturatesAndKeepsTheSignOfZero) {
  // 464 is the tie between 448 and the NaN code's 480: it must not round up.
  for (float x : {448.0f, 449.0f, 464.0f, 470.0f, 480.0f, 1e6f, 3e38f, kInf}) {
    EXPECT_EQ(round_e4m3(x), 448.0f) << x;
    EXPECT_EQ(round_e4m3(-x), -448.0f) << x;
  }
  EXPECT_EQ(round_e4m3(0x1p-10f), 0.0f);  // tie between 0 and the smallest subnormal
  EXPECT_TRUE(std::signbit(round_e4m3(-1e-10f)));
  EXPECT_FALSE(std::signbit(round_e4m3(1e-10f)));
}

TEST(RoundE2m1, SpecTieCases) {
  const float ties[][2] = {{0.25f, 0}, {0.75f, 1}, {1.25f, 1}, {1.75f, 2},
                           {2.5f, 2},  {3.5f, 4},  {5.0f, 4}};
  for (const auto& t : ties) {
    EXPECT_EQ(round_e2m1(t[0]), t[1]) << t[0];
    EXPECT_EQ(round_e2m1(-t[0]), -t[1]) << t[0];
  }
}

TEST(RoundE2m1, MatchesBruteForceNearestAndSaturates) {
  const std::vector<Code> codes = e2m1_codes();
  for (float x : probe_inputs(codes, 6.0)) {
    EXPECT_EQ(static_cast<double>(round_e2m1(x)), nearest(codes, x)) << x;
  }
  for (float x : {6.0f, 6.5f, 7.0f, 8.0f, 1e30f, kInf}) {
    EXPECT_EQ(round_e2m1(x), 6.0f) << x;
    EXPECT_EQ(round_e2m1(-x), -6.0f) << x;
  }
}

// Random blocks whose magnitudes vary widely between blocks (so the scales differ), with some
// all-zero and some tiny blocks that exercise the amax floor.
std::vector<float> random_blocks(int64_t n, int64_t block, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> exponent(-40, 40);
  std::vector<float> v(n);
  for (int64_t start = 0; start < n; start += block) {
    const int kind = static_cast<int>((start / block) % 5);
    const float scale = kind == 0 ? 0.0f : kind == 1 ? 1e-7f : std::ldexp(1.0f, exponent(rng));
    for (int64_t i = start; i < std::min(n, start + block); ++i) v[i] = normal(rng) * scale;
  }
  return v;
}

// Checks one quantize-dequantize simulation block by block: the scale is the frexp power of two
// above f32(max(amax, floor) * f32(1/max)), and each output is the brute-force nearest code of
// v / s, times s (so it lies in the code set times the block scale).
void check_simulation(const std::vector<float>& in, const std::vector<float>& out, int64_t block,
                      const std::vector<Code>& codes, float amax_floor, float format_max) {
  const int64_t n = static_cast<int64_t>(in.size());
  for (int64_t start = 0; start < n; start += block) {
    const int64_t end = std::min(n, start + block);
    float amax = 0.0f;
    for (int64_t i = start; i < end; ++i) amax = std::max(amax, std::fabs(in[i]));
    const float scaled = std::max(amax, amax_floor) * (1.0f / format_max);
    const double s = ceil_pow2(scaled);
    for (int64_t i = start; i < end; ++i) {
      ASSERT_EQ(static_cast<double>(out[i]), nearest(codes, in[i] / s) * s)
          << "element " << i << " of block at " << start << ", input " << in[i];
    }
  }
}

TEST(Fp8Simulate, BlocksMatchTheSpecAndBruteForce) {
  const std::vector<Code> codes = e4m3_codes();
  for (int64_t block : {64, 128}) {
    const std::vector<float> in = random_blocks(block * 40, block, 3);
    std::vector<float> out = in;
    fp8_simulate(out.data(), static_cast<int64_t>(out.size()), block);
    check_simulation(in, out, block, codes, 1e-4f, 448.0f);
  }
}

TEST(Fp8Simulate, AmaxFloor) {
  // max(amax, 1e-4) * f32(1/448) = 2.23e-7 rounds up to the scale 2^-22.
  ASSERT_EQ(ceil_pow2(1e-4f * (1.0f / 448.0f)), 0x1p-22);
  std::vector<float> v = {1e-6f, -3e-6f, 0.0f, 0.0f};
  fp8_simulate(v.data(), 4, 4);
  EXPECT_EQ(v[0], 4 * 0x1p-22f);    // 1e-6 / 2^-22 = 4.19 -> 4
  EXPECT_EQ(v[1], -13 * 0x1p-22f);  // 12.58, spacing 1 in the binade [8, 16) -> 13
  EXPECT_EQ(v[2], 0.0f);
  std::vector<float> zeros(128, 0.0f);
  fp8_simulate(zeros.data(), 128, 128);
  for (float z : zeros) EXPECT_EQ(z, 0.0f);
}

TEST(Fp8Simulate, IsIdempotent) {
  std::vector<float> v = random_blocks(128 * 50, 128, 5);
  fp8_simulate(v.data(), static_cast<int64_t>(v.size()), 128);
  const std::vector<float> once = v;
  fp8_simulate(v.data(), static_cast<int64_t>(v.size()), 128);
  EXPECT_EQ(v, once);
}

TEST(Fp8Simulate, ShortLastBlockHasItsOwnScale) {
  std::vector<float> v = random_blocks(64 * 3 + 17, 64, 9);
  for (int64_t i = 64 * 3; i < static_cast<int64_t>(v.size()); ++i) v[i] *= 1e-3f;
  const std::vector<float> in = v;
  fp8_simulate(v.data(), static_cast<int64_t>(v.size()), 64);
  check_simulation(in, v, 64, e4m3_codes(), 1e-4f, 448.0f);
  // The same as simulating the 17-value tail on its own.
  std::vector<float> tail(in.begin() + 64 * 3, in.end());
  fp8_simulate(tail.data(), static_cast<int64_t>(tail.size()), 64);
  EXPECT_TRUE(std::equal(tail.begin(), tail.end(), v.begin() + 64 * 3));
}

TEST(Fp8Simulate, RejectsAnEmptyBlock) {
  float v = 1.0f;
  EXPECT_THROW(fp8_simulate(&v, 1, 0), std::invalid_argument);
}

TEST(Fp4Simulate, BlocksMatchTheSpecAndBruteForce) {
  const std::vector<float> in = random_blocks(32 * 100 + 5, 32, 11);
  std::vector<float> out = in;
  fp4_simulate(out.data(), static_cast<int64_t>(out.size()), 32);
  check_simulation(in, out, 32, e2m1_codes(), 6.0f * 0x1p-126f, 6.0f);
}

TEST(Fp4Simulate, AmaxFloor) {
  // max(amax, 6 * 2^-126) * f32(1/6) rounds to exactly 2^-126: the scale of tiny blocks.
  ASSERT_EQ(ceil_pow2(6.0f * 0x1p-126f * (1.0f / 6.0f)), 0x1p-126);
  std::vector<float> v = {0x1.8p-126f, -0x1p-128f, 0x1.8p-127f, 1e-40f};
  fp4_simulate(v.data(), 4, 32);
  EXPECT_EQ(v[0], 0x1.8p-126f);  // 1.5 on the grid
  EXPECT_EQ(v[1], -0.0f);        // 0.25 -> 0
  EXPECT_EQ(v[2], 0x1p-126f);    // 0.75 -> 1
  EXPECT_EQ(v[3], 0.0f);         // a subnormal input far below the floor
}

TEST(Fp4Simulate, IsIdempotent) {
  std::vector<float> v = random_blocks(32 * 200, 32, 13);
  fp4_simulate(v.data(), static_cast<int64_t>(v.size()), 32);
  const std::vector<float> once = v;
  fp4_simulate(v.data(), static_cast<int64_t>(v.size()), 32);
  EXPECT_EQ(v, once);
}

TEST(Hadamard, EqualsTheExplicitSylvesterMatrix) {
  constexpr int n = 128;
  std::mt19937 rng(17);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(n);
  for (float& e : x) e = normal(rng);
  std::vector<float> y = x;
  hadamard(y.data(), n);
  for (int i = 0; i < n; ++i) {
    double ref = 0.0;
    for (int j = 0; j < n; ++j)
      ref += (std::popcount(static_cast<unsigned>(i & j)) % 2 ? -1 : 1) * x[j];
    ref /= std::sqrt(static_cast<double>(n));
    EXPECT_NEAR(y[i], ref, 1e-5) << i;
  }
}

TEST(Hadamard, IsOrthogonal) {
  std::mt19937 rng(19);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int n = 1; n <= 1024; n *= 2) {
    // H * H = I: applying the scaled transform twice gives the input back.
    std::vector<float> x(n);
    for (float& e : x) e = normal(rng);
    std::vector<float> y = x;
    hadamard(y.data(), n);
    hadamard(y.data(), n);
    for (int i = 0; i < n; ++i) EXPECT_NEAR(y[i], x[i], 1e-5) << n << " " << i;
  }
  // The columns (images of the unit vectors) are orthonormal.
  constexpr int n = 128;
  std::vector<std::vector<float>> cols(n, std::vector<float>(n, 0.0f));
  for (int k = 0; k < n; ++k) {
    cols[k][k] = 1.0f;
    hadamard(cols[k].data(), n);
  }
  for (int a = 0; a < n; ++a) {
    for (int b = 0; b < n; ++b) {
      double dot = 0.0;
      for (int i = 0; i < n; ++i) dot += static_cast<double>(cols[a][i]) * cols[b][i];
      EXPECT_NEAR(dot, a == b ? 1.0 : 0.0, 1e-6) << a << " " << b;
    }
  }
}

TEST(Hadamard, RejectsNonPowersOfTwo) {
  std::vector<float> v(96, 1.0f);
  EXPECT_THROW(hadamard(v.data(), 96), std::invalid_argument);
  EXPECT_THROW(hadamard(v.data(), 0), std::invalid_argument);
}

// y = w * x / sqrt(mean(x^2) + eps) in double.
std::vector<double> rms_norm_reference(const std::vector<float>& x, const float* w, float eps) {
  double sum = 0.0;
  for (float e : x) sum += static_cast<double>(e) * e;
  const double r = 1.0 / std::sqrt(sum / static_cast<double>(x.size()) + eps);
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = (w ? w[i] : 1.0) * x[i] * r;
  return y;
}

TEST(RmsNorm, MatchesDouble) {
  constexpr int64_t n = 4096;
  std::mt19937 rng(23);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (float scale : {1e-3f, 1.0f, 300.0f}) {
    std::vector<float> x(n), w(n);
    for (float& e : x) e = normal(rng) * scale;
    for (float& e : w) e = 1.0f + 0.1f * normal(rng);
    for (const float* weight :
         {static_cast<const float*>(nullptr), static_cast<const float*>(w.data())}) {
      const std::vector<double> ref = rms_norm_reference(x, weight, 1e-6f);
      std::vector<float> y(n);
      rms_norm(x.data(), weight, y.data(), n, 1e-6f);
      for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(y[i], ref[i], 1e-6 * std::fabs(ref[i])) << i;
      // In place gives the same result.
      std::vector<float> z = x;
      rms_norm(z.data(), weight, z.data(), n, 1e-6f);
      EXPECT_EQ(z, y);
    }
  }
}

TEST(RmsNorm, ZeroInputStaysZero) {
  std::vector<float> x(64, 0.0f);
  rms_norm(x.data(), nullptr, x.data(), 64, 1e-6f);
  for (float e : x) EXPECT_EQ(e, 0.0f);
}

constexpr YarnParams kV4Yarn = {16.0f, 65536, 32.0f, 1.0f};

TEST(Rope, FrequencyTableOfTheSpec) {
  const RopeTable plain(64, 1e4f, std::nullopt);
  const RopeTable yarn(64, 1.6e5f, kV4Yarn);
  EXPECT_EQ(plain.dims(), 64);
  EXPECT_EQ(yarn.dims(), 64);
  // model.md §3.7, "Reference values of f_j".
  const struct {
    int j;
    double plain, yarn;
  } table[] = {{0, 1, 1},
               {1, 0.749894202, 0.687656045},
               {4, 0.316227764, 0.223606795},
               {8, 0.100000001, 0.0500000007},
               {15, 0.0133352149, 0.00363553851},
               {16, 0.00999999978, 0.00226562493},
               {20, 0.00316227786, 0.000296977785},
               {24, 0.00100000005, 1.95312532e-05},
               {25, 0.000749894185, 5.37231244e-06},
               {31, 0.00013335215, 5.6805294e-07}};
  for (const auto& row : table) {
    EXPECT_NEAR(plain.frequency(row.j), row.plain, 1e-6 * row.plain) << row.j;
    EXPECT_NEAR(yarn.frequency(row.j), row.yarn, 1e-6 * row.yarn) << row.j;
  }
  // Every unscaled frequency against base^(-2j/64) in double.
  for (int j = 0; j < 32; ++j) {
    const double ref = std::pow(1e4, -2.0 * j / 64.0);
    EXPECT_NEAR(plain.frequency(j), ref, 1e-6 * ref) << j;
  }
}

TEST(Rope, YarnRampRunsFrom15To25) {
  // For base 1.6e5: corr(32) = 15.45 and corr(1) = 24.71, so low = 15 and high = 25. Pairs up to
  // low keep their frequency exactly (smooth = 1), pairs from high on are exactly f / 16
  // (smooth = 0), the ones between are blended strictly in between.
  const RopeTable plain(64, 1.6e5f, std::nullopt);
  const RopeTable yarn(64, 1.6e5f, kV4Yarn);
  for (int j = 0; j < 32; ++j) {
    const float f = plain.frequency(j);
    if (j <= 15) {
      EXPECT_EQ(yarn.frequency(j), f) << j;
    } else if (j >= 25) {
      EXPECT_EQ(yarn.frequency(j), f / 16.0f) << j;
    } else {
      EXPECT_LT(yarn.frequency(j), f) << j;
      EXPECT_GT(yarn.frequency(j), f / 16.0f) << j;
    }
  }
  // j = 16: ramp 1/10, smooth = f32(1 - 0.1f) = 0.899999976 and 1 - smooth = 0.100000024, each
  // product and the sum rounded to fp32 on its own (the spec's worked numbers).
  const float f16 = plain.frequency(16);
  const float scaled = (f16 / 16.0f) * 0.100000024f;
  const float kept = f16 * 0.899999976f;
  EXPECT_EQ(yarn.frequency(16), scaled + kept);
}

TEST(Rope, RejectsBadArguments) {
  EXPECT_THROW(RopeTable(63, 1e4f, std::nullopt), std::invalid_argument);
  EXPECT_THROW(RopeTable(0, 1e4f, std::nullopt), std::invalid_argument);
  EXPECT_THROW(RopeTable(64, 1.0f, std::nullopt), std::invalid_argument);
  EXPECT_THROW(RopeTable(64, 1e4f, YarnParams{0.0f, 65536, 32.0f, 1.0f}), std::invalid_argument);
}

std::vector<float> random_vector(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& e : v) e = normal(rng);
  return v;
}

TEST(Rope, InverseUndoesRotationAndNormsArePreserved) {
  const RopeTable rope(64, 1.6e5f, kV4Yarn);
  for (int64_t pos : {0L, 1L, 7L, 1000L, 65535L, 1000000L}) {
    const std::vector<float> x = random_vector(64, static_cast<uint32_t>(pos) + 29);
    std::vector<float> y = x;
    rope.rotate(y.data(), pos, false);
    for (int j = 0; j < 32; ++j) {
      const double before = std::hypot(double{x[2 * j]}, double{x[2 * j + 1]});
      const double after = std::hypot(double{y[2 * j]}, double{y[2 * j + 1]});
      EXPECT_NEAR(after, before, 1e-6 * before) << pos << " " << j;
    }
    rope.rotate(y.data(), pos, true);
    for (int i = 0; i < 64; ++i) EXPECT_NEAR(y[i], x[i], 1e-6 * std::max(1.0f, std::fabs(x[i])));
  }
  // Position 0 is the identity exactly (cos 0 = 1, sin 0 = 0).
  const std::vector<float> x = random_vector(64, 31);
  std::vector<float> y = x;
  rope.rotate(y.data(), 0, false);
  EXPECT_EQ(y, x);
}

TEST(Rope, RotatesEachPairByItsAngle) {
  const RopeTable rope(64, 1e4f, std::nullopt);
  const std::vector<float> x = random_vector(64, 37);
  std::vector<float> y = x;
  constexpr int64_t pos = 12345;
  rope.rotate(y.data(), pos, false);
  for (int j = 0; j < 32; ++j) {
    const double theta = static_cast<float>(pos) * rope.frequency(j);
    const double x0 = x[2 * j], x1 = x[2 * j + 1];
    EXPECT_NEAR(y[2 * j], x0 * std::cos(theta) - x1 * std::sin(theta), 1e-6) << j;
    EXPECT_NEAR(y[2 * j + 1], x0 * std::sin(theta) + x1 * std::cos(theta), 1e-6) << j;
  }
}

TEST(Rope, AngleIsOneFp32Product) {
  // At t = 1e6 the fp32 product t * f_1 is ~7.5e5, whose spacing 0.0625 rad makes the single
  // rounding visible: the rotation must use that rounded angle, not the exact product.
  const RopeTable rope(64, 1e4f, std::nullopt);
  const float f1 = rope.frequency(1);
  const float theta32 = 1e6f * f1;
  const double theta_exact = 1e6 * static_cast<double>(f1);
  ASSERT_GT(std::fabs(theta32 - theta_exact), 1e-3);
  std::vector<float> x(64, 0.0f);
  x[2] = 1.0f;  // pair 1 = (1, 0): the result is (cos theta, sin theta)
  rope.rotate(x.data(), 1000000, false);
  EXPECT_NEAR(x[2], std::cos(static_cast<double>(theta32)), 1e-6);
  EXPECT_NEAR(x[3], std::sin(static_cast<double>(theta32)), 1e-6);
  EXPECT_GT(std::fabs(x[3] - std::sin(theta_exact)), 1e-4);
}

TEST(SoftmaxWithSink, MatchesDoubleAndLeavesTheSinkShare) {
  std::mt19937 rng(41);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  for (int n : {1, 2, 17, 512}) {
    std::vector<float> z(n);
    for (float& e : z) e = normal(rng);
    const float sink = normal(rng);
    std::vector<float> p(n);
    softmax_with_sink(z.data(), n, sink, p.data());

    const double m = *std::max_element(z.begin(), z.end());
    double den = std::exp(static_cast<double>(sink) - m);
    for (float e : z) den += std::exp(e - m);
    double total = 0.0;
    for (int j = 0; j < n; ++j) {
      const double ref = std::exp(z[j] - m) / den;
      EXPECT_NEAR(p[j], ref, 1e-6 * ref + 1e-12) << n << " " << j;
      total += p[j];
    }
    EXPECT_LT(total, 1.0);
    EXPECT_NEAR(1.0 - total, std::exp(static_cast<double>(sink) - m) / den, 1e-6) << n;
  }
}

TEST(SoftmaxWithSink, EmptyRowAndExtremeSinks) {
  float untouched = 42.0f;
  softmax_with_sink(nullptr, 0, 1.0f, &untouched);
  EXPECT_EQ(untouched, 42.0f);

  std::vector<float> z = {0.5f, -1.0f, 2.0f};
  std::vector<float> p(3);
  // A sink far above every score takes (almost) all the mass, without NaN.
  softmax_with_sink(z.data(), 3, 1000.0f, p.data());
  for (float e : p) EXPECT_EQ(e, 0.0f);
  // A sink far below leaves the plain softmax.
  softmax_with_sink(z.data(), 3, -1000.0f, p.data());
  EXPECT_NEAR(p[0] + p[1] + p[2], 1.0, 1e-6);
  // In place.
  std::vector<float> q = z;
  softmax_with_sink(q.data(), 3, -1000.0f, q.data());
  EXPECT_EQ(q, p);
}

}  // namespace
}  // namespace magnetar::cpu
