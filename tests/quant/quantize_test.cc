// Encoders: error bounds on Gaussian data, importance weighting, IQ2_XXS structure, edge cases
// (shared/spec/gguf.md §4.3 - §4.9).
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <thread>
#include <vector>

#include "quant/blocks.h"
#include "quant/fp16.h"
#include "quant/iq2xxs_tables.h"
#include "quant/quant.h"
#include "test_util.h"

namespace magnetar::quant {
namespace {

using testing::gaussian;
using testing::relative_rmse;
using testing::round_trip;

constexpr int64_t kRows = 32;
constexpr int64_t kCols = 2048;

TEST(Quantize, Q8_0ErrorIsHalfAStep) {
  // q = round(x / d) is within 1/2 of x / d, so |x - d q| <= d / 2 for the exact d = amax / 127.
  // The block stores d' = f16(d); with |q| <= 127 that adds at most 127 |d' - d|.
  const std::vector<float> x = gaussian(kRows * kCols, 1, 3.0f);
  std::vector<BlockQ8_0> q(x.size() / 32);
  quantize_row(GgmlType::kQ8_0, x.data(), q.data(), static_cast<int64_t>(x.size()));
  std::vector<float> y(x.size());
  dequantize_row(GgmlType::kQ8_0, q.data(), y.data(), static_cast<int64_t>(x.size()));
  for (size_t b = 0; b < q.size(); ++b) {
    float amax = 0;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[32 * b + i]));
    const double d = amax / 127.0;
    const double stored = f16_to_f32(q[b].d);
    const double bound = d / 2 + 127 * std::fabs(stored - d) + 1e-6 * amax;
    for (int i = 0; i < 32; ++i) {
      ASSERT_LE(std::fabs(x[32 * b + i] - y[32 * b + i]), bound) << b << " " << i;
      // Half-way cases round away from zero (roundf), checked against the exact d.
      const double r = x[32 * b + i] / (amax / 127.0f);
      EXPECT_LE(std::fabs(r - q[b].qs[i]), 0.5 + 1e-5);
    }
  }
}

TEST(Quantize, Q8_0RoundsHalfAwayFromZero) {
  // amax = 127 gives d = 1 exactly, so x = k + 0.5 is an exact tie.
  float x[32] = {127.0f, 0.5f, -0.5f, 1.5f, -2.5f, 2.5f};
  BlockQ8_0 q;
  quantize_row(GgmlType::kQ8_0, x, &q, 32);
  EXPECT_EQ(q.d, 0x3c00);  // 1.0
  EXPECT_EQ(q.qs[0], 127);
  EXPECT_EQ(q.qs[1], 1);
  EXPECT_EQ(q.qs[2], -1);
  EXPECT_EQ(q.qs[3], 2);
  EXPECT_EQ(q.qs[4], -3);
  EXPECT_EQ(q.qs[5], 3);
}

TEST(Quantize, Q8_KErrorIsHalfAStep) {
  // d = -max / 127 is stored as f32 and q = nearest(x / d): |x - d q| <= |d| / 2 (+ f32 rounding).
  const std::vector<float> x = gaussian(kRows * 256, 2, 0.7f);
  std::vector<BlockQ8_K> q(x.size() / 256);
  quantize_row(GgmlType::kQ8_K, x.data(), q.data(), static_cast<int64_t>(x.size()));
  std::vector<float> y(x.size());
  dequantize_row(GgmlType::kQ8_K, q.data(), y.data(), static_cast<int64_t>(x.size()));
  for (size_t b = 0; b < q.size(); ++b) {
    float max = 0;
    for (int i = 0; i < 256; ++i) {
      if (std::fabs(x[256 * b + i]) > std::fabs(max)) max = x[256 * b + i];
    }
    EXPECT_FLOAT_EQ(q[b].d, -max / 127);
    for (int i = 0; i < 256; ++i) {
      ASSERT_LE(std::fabs(x[256 * b + i] - y[256 * b + i]), std::fabs(q[b].d) * (0.5 + 1e-5));
    }
    for (int j = 0; j < 16; ++j) {
      int sum = 0;
      for (int i = 0; i < 16; ++i) sum += q[b].qs[16 * j + i];
      EXPECT_EQ(q[b].bsums[j], sum);
    }
  }
}

TEST(Quantize, F16AndBf16ErrorIsHalfAnUlp) {
  const std::vector<float> x = gaussian(4096, 3, 10.0f);
  const std::vector<float> h = round_trip(GgmlType::kF16, x, 1, 4096);
  const std::vector<float> b = round_trip(GgmlType::kBF16, x, 1, 4096);
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::fabs(x[i]) >= 0x1p-14f) {
      ASSERT_LE(std::fabs(x[i] - h[i]), std::fabs(x[i]) * 0x1p-11f);
    }
    ASSERT_LE(std::fabs(x[i] - b[i]), std::fabs(x[i]) * 0x1p-8f);
  }
  EXPECT_EQ(round_trip(GgmlType::kF32, x, 1, 4096), x);
}

// Relative RMSE bounds for unit Gaussian rows. Model: a uniform quantizer with L levels spread
// over a sub-block's range R has RMS error R / (L - 1) / sqrt(12); for Gaussian sub-blocks the
// expected range is about 3.5 sigma (16 values) or 4.1 sigma (32 values). That predicts 0.34 for
// Q2_K (4 levels, 16 values) and 0.079 for Q4_K (16 levels, 32 values); the least-squares fits do
// better (measured: Q2_K 0.299 reference / 0.273 importance, Q4_K 0.072). IQ2_XXS has no such
// closed form (a 256-point codebook per 8 weights); measured 0.346, of which part is the format's
// own bias (grid magnitudes 8, 25, 43 decode as 1, 3.125, 5.375 times the fitted levels 1, 3, 5).
// Q8_0 (symmetric, 255 levels over +-amax, amax of 32 values ~ 2.1 sigma): 2 * 2.1 / 254 / sqrt(12)
// = 0.0048, plus f16 rounding of d; measured 0.0054, bound 0.0075. The bounds below are the model
// values, or measured + 10% where there is no model.
struct ErrorBound {
  GgmlType type;
  double bound;
};

class QuantizeError : public ::testing::TestWithParam<ErrorBound> {};

TEST_P(QuantizeError, GaussianRowsWithinBound) {
  const ErrorBound& c = GetParam();
  const std::vector<float> x = gaussian(kRows * kCols, 4);
  const std::vector<float> ones(kCols, 1.0f);
  const double plain = relative_rmse(x, round_trip(c.type, x, kRows, kCols));
  const double weighted = relative_rmse(x, round_trip(c.type, x, kRows, kCols, ones.data()));
  EXPECT_LE(plain, c.bound);
  EXPECT_LE(weighted, c.bound);
  // Scale invariance: the same data scaled by 2^k (exact in f32) gives the same relative error
  // as long as the block scales stay normal f16 numbers.
  for (float scale : {0x1p-6f, 0x1p10f}) {
    std::vector<float> xs = x;
    for (float& v : xs) v *= scale;
    EXPECT_NEAR(relative_rmse(xs, round_trip(c.type, xs, kRows, kCols)), plain, 0.01 * plain)
        << scale;
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, QuantizeError,
                         ::testing::Values(ErrorBound{GgmlType::kQ2_K, 0.34},
                                           ErrorBound{GgmlType::kQ4_K, 0.079},
                                           ErrorBound{GgmlType::kIQ2_XXS, 0.38},
                                           ErrorBound{GgmlType::kQ8_0, 0.0075}),
                         [](const auto& info) { return std::string(type_name(info.param.type)); });

// Importance steers the fit: with weight 100 on every 8th column, the weighted squared error on
// those columns must drop well below what the unweighted encoder gets (measured: to 11% / 33% /
// 32% of it for Q2_K / Q4_K / IQ2_XXS); require at least a factor 2.
class ImportanceTest : public ::testing::TestWithParam<GgmlType> {};

TEST_P(ImportanceTest, LowersErrorOnImportantColumns) {
  const GgmlType type = GetParam();
  const int64_t cols = 1024;
  const std::vector<float> x = gaussian(kRows * cols, 5);
  std::vector<float> importance(cols, 1.0f);
  for (int64_t c = 0; c < cols; c += 8) importance[c] = 100.0f;
  const std::vector<float> ones(cols, 1.0f);
  // IQ2_XXS cannot run without importance: its unweighted baseline is all-ones importance.
  const float* baseline_importance = type == GgmlType::kIQ2_XXS ? ones.data() : nullptr;
  const std::vector<float> base = round_trip(type, x, kRows, cols, baseline_importance);
  const std::vector<float> steered = round_trip(type, x, kRows, cols, importance.data());
  auto weighted_error = [&](const std::vector<float>& y, bool important_only) {
    double e = 0;
    for (int64_t r = 0; r < kRows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        if (important_only && importance[c] == 1.0f) continue;
        const double d = static_cast<double>(x[r * cols + c]) - y[r * cols + c];
        e += importance[c] * d * d;
      }
    }
    return e;
  };
  EXPECT_LT(weighted_error(steered, true), 0.5 * weighted_error(base, true));
  EXPECT_LT(weighted_error(steered, false), weighted_error(base, false));
}

INSTANTIATE_TEST_SUITE_P(Encoders, ImportanceTest,
                         ::testing::Values(GgmlType::kQ2_K, GgmlType::kQ4_K, GgmlType::kIQ2_XXS),
                         [](const auto& info) { return std::string(type_name(info.param)); });

TEST(Quantize, KQuantsPathsDifferOnlyWithImportance) {
  const std::vector<float> x = gaussian(1024, 6);
  const std::vector<float> ones(1024, 1.0f);
  for (GgmlType type : {GgmlType::kQ2_K, GgmlType::kQ4_K}) {
    std::vector<uint8_t> a(row_bytes(type, 1024));
    std::vector<uint8_t> b(a.size());
    std::vector<uint8_t> c(a.size());
    quantize_row(type, x.data(), a.data(), 1024);
    quantize_row(type, x.data(), b.data(), 1024, ones.data());
    quantize_matrix(type, x.data(), c.data(), 1, 1024);
    EXPECT_NE(a, b) << type_name(type);  // reference and importance encoders are different fits
    EXPECT_EQ(a, c) << type_name(type);  // without importance the matrix entry point = reference
  }
}

std::vector<BlockIQ2_XXS> quantize_iq2(const std::vector<float>& x, const float* importance) {
  std::vector<BlockIQ2_XXS> q(x.size() / 256);
  quantize_row(GgmlType::kIQ2_XXS, x.data(), q.data(), static_cast<int64_t>(x.size()), importance);
  return q;
}

uint32_t group_word(const BlockIQ2_XXS& b, int g) {
  uint32_t w;
  std::memcpy(&w, b.qs + 8 * g + 4, 4);
  return w;
}

TEST(Iq2xxsEncoder, SignsFollowTheDataUpToOneParityFlip) {
  // Every 8-tuple decodes to a grid pattern (by construction of the format); what the encoder
  // decides is the sign pattern: it must equal the data's signs, except that an odd number of
  // negatives forces exactly one flip, on the element with the smallest importance * x^2.
  const std::vector<float> x = gaussian(16 * 256, 7);
  const std::vector<float> importance = gaussian(256 * 16, 8);
  std::vector<float> qw(importance.size());
  for (size_t i = 0; i < qw.size(); ++i) qw[i] = 0.1f + std::fabs(importance[i]);
  const std::vector<BlockIQ2_XXS> q = quantize_iq2(x, qw.data());
  for (size_t b = 0; b < q.size(); ++b) {
    const float* xb = x.data() + 256 * b;
    float sigma2 = 0;
    for (int i = 0; i < 256; ++i) sigma2 += xb[i] * xb[i] / 256;
    for (int g = 0; g < 8; ++g) {
      const uint32_t word = group_word(q[b], g);
      for (int k = 0; k < 4; ++k) {
        const int first = 32 * g + 8 * k;
        uint32_t data_signs = 0;
        int cheapest = 0;
        float cheapest_cost = 0;
        for (int i = 0; i < 8; ++i) {
          const float v = xb[first + i];
          if (v < 0) data_signs |= 1u << i;
          const float w = qw[256 * b + first + i] * std::sqrt(sigma2 + v * v);
          const float cost = w * v * v;
          if (i == 0 || cost < cheapest_cost) {
            cheapest_cost = cost;
            cheapest = i;
          }
        }
        if (std::popcount(data_signs) % 2) data_signs ^= 1u << cheapest;
        const uint32_t stored = kIq2xsSigns[(word >> (7 * k)) & 127];
        EXPECT_EQ(stored, data_signs) << b << " " << g << " " << k;
      }
    }
  }
}

TEST(Iq2xxsEncoder, LargestGroupUsesTheTopScale) {
  const std::vector<float> x = gaussian(8 * 256, 9);
  const std::vector<BlockIQ2_XXS> q = quantize_iq2(x, nullptr);
  for (const BlockIQ2_XXS& b : q) {
    int top = 0;
    for (int g = 0; g < 8; ++g) top = std::max<int>(top, group_word(b, g) >> 28);
    EXPECT_EQ(top, 15);  // d = max group scale / 31 = that scale / (2 * 15 + 1)
  }
}

TEST(Iq2xxsEncoder, ZeroGroupsQuirk) {
  // An all-zero block is all-zero bytes and decodes to zeros.
  std::vector<float> x(256, 0.0f);
  std::vector<BlockIQ2_XXS> q = quantize_iq2(x, nullptr);
  const BlockIQ2_XXS zero{};
  EXPECT_EQ(std::memcmp(&q[0], &zero, sizeof(zero)), 0);
  // A zero group in a non-zero block is stored as grid 0, signs 0, scale 0, and therefore
  // decodes to +d (d * 0.5 * 0.25 * 8) for all its 32 weights, not to 0.
  const std::vector<float> g = gaussian(256, 10);
  std::copy(g.begin() + 32, g.end(), x.begin() + 32);  // group 0 stays zero
  q = quantize_iq2(x, nullptr);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(q[0].qs[i], 0) << i;
  std::vector<float> y(256);
  dequantize_row(GgmlType::kIQ2_XXS, q.data(), y.data(), 256);
  const float d = f16_to_f32(q[0].d);
  EXPECT_GT(d, 0.0f);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(y[i], d);
}

TEST(Iq2xxsEncoder, MatrixWithoutImportanceUsesColumnEnergy) {
  const int64_t rows = 6;
  const int64_t cols = 512;
  std::vector<float> x = gaussian(rows * cols, 12);
  for (int64_t c = 0; c < cols; ++c) x[c] *= 1.0f + static_cast<float>(c % 7);  // uneven columns
  std::vector<float> energy(cols, 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) energy[c] += x[r * cols + c] * x[r * cols + c];
  }
  const int64_t rb = row_bytes(GgmlType::kIQ2_XXS, cols);
  std::vector<uint8_t> implicit(rows * rb);
  std::vector<uint8_t> explicit_rows(rows * rb);
  std::vector<uint8_t> ones_rows(rows * rb);
  quantize_matrix(GgmlType::kIQ2_XXS, x.data(), implicit.data(), rows, cols);
  for (int64_t r = 0; r < rows; ++r) {
    quantize_row(GgmlType::kIQ2_XXS, x.data() + r * cols, explicit_rows.data() + r * rb, cols,
                 energy.data());
    quantize_row(GgmlType::kIQ2_XXS, x.data() + r * cols, ones_rows.data() + r * rb, cols);
  }
  EXPECT_EQ(implicit, explicit_rows);
  EXPECT_NE(implicit, ones_rows);
}

TEST(QuantizeEdges, ZeroRowsDecodeToZero) {
  const std::vector<float> x(512, 0.0f);
  for (GgmlType type : {GgmlType::kF32, GgmlType::kF16, GgmlType::kBF16, GgmlType::kQ8_0,
                        GgmlType::kQ8_K, GgmlType::kQ2_K, GgmlType::kQ4_K, GgmlType::kIQ2_XXS}) {
    for (float v : round_trip(type, x, 2, 256)) ASSERT_EQ(v, 0.0f) << type_name(type);
  }
}

TEST(QuantizeEdges, ConstantRows) {
  // A constant row is one level (or the offset) of Q8_0, Q8_K, Q2_K and Q4_K: only the rounding
  // of the f16 / f32 block scales remains (measured <= 4e-4 relative while the scales are normal
  // f16 numbers; Q4_K stores d = c / 945, subnormal below c ~ 0.06).
  for (float c : {3.7f, -3.7f, 0.1f, -250.0f}) {
    const std::vector<float> x(512, c);
    const std::vector<float> ones(512, 1.0f);
    for (const float* imp : {static_cast<const float*>(nullptr), ones.data()}) {
      for (GgmlType type : {GgmlType::kQ8_0, GgmlType::kQ8_K, GgmlType::kQ2_K, GgmlType::kQ4_K}) {
        for (float v : round_trip(type, x, 2, 256, imp)) {
          ASSERT_NEAR(v, c, std::fabs(c) * 2e-3) << type_name(type) << " " << c;
        }
      }
      // IQ2_XXS could code it exactly as the all-level-1 grid point, but its scale search starts
      // from make_qp's all-top-level fit: every tried scale rounds to the off-grid all-5 tuple,
      // which snaps to mixed-level neighbours (measured error 0.33 relative). Only the generic
      // bound holds.
      const std::vector<float> y = round_trip(GgmlType::kIQ2_XXS, x, 2, 256, imp);
      EXPECT_LE(relative_rmse(x, y), 0.38) << c;
      for (float v : y) EXPECT_EQ(std::signbit(v), std::signbit(c)) << c;
    }
  }
}

TEST(QuantizeEdges, HugeAndTinyMagnitudes) {
  const std::vector<float> unit = gaussian(16 * 256, 13);
  struct Case {
    GgmlType type;
    double bound;  // the Gaussian bounds above (Q8_0 / Q8_K: half a step of ~3.5 sigma / 127)
  };
  for (const Case& c :
       {Case{GgmlType::kQ8_0, 0.0075}, Case{GgmlType::kQ8_K, 0.0075}, Case{GgmlType::kQ2_K, 0.34},
        Case{GgmlType::kQ4_K, 0.079}, Case{GgmlType::kIQ2_XXS, 0.38}}) {
    // Huge (sigma 1e4) and small (sigma 1e-3): the block scales stay finite f16 numbers (normal,
    // or subnormal with enough bits), so the relative error bound is unchanged.
    for (float sigma : {1e4f, 1e-3f}) {
      std::vector<float> x = unit;
      for (float& v : x) v *= sigma;
      EXPECT_LE(relative_rmse(x, round_trip(c.type, x, 16, 256)), c.bound)
          << type_name(c.type) << " " << sigma;
    }
    // Tiny (sigma 1e-6): the f16 scales underflow to few bits or zero, so the relative error is
    // no longer bounded (Q4_K's dmin can even exceed the data), but the output stays finite and
    // of the order of the input.
    std::vector<float> x = unit;
    for (float& v : x) v *= 1e-6f;
    for (float v : round_trip(c.type, x, 16, 256)) {
      ASSERT_TRUE(std::isfinite(v)) << type_name(c.type);
      ASSERT_LE(std::fabs(v), 1e-4f) << type_name(c.type);
    }
  }
}

TEST(QuantizeEdges, InvalidArgumentsThrow) {
  std::vector<float> x(1024, 1.0f);
  std::vector<uint8_t> out(8192);
  for (GgmlType type :
       {GgmlType::kQ8_0, GgmlType::kQ8_K, GgmlType::kQ2_K, GgmlType::kQ4_K, GgmlType::kIQ2_XXS}) {
    const int64_t bad = type_info(type).block_elems + 16;
    EXPECT_THROW(quantize_row(type, x.data(), out.data(), bad), std::invalid_argument);
    EXPECT_THROW(quantize_matrix(type, x.data(), out.data(), 2, bad), std::invalid_argument);
    EXPECT_THROW(quantize_row(type, x.data(), out.data(), -256), std::invalid_argument);
  }
  EXPECT_THROW(quantize_row(GgmlType::kQ6_K, x.data(), out.data(), 256), std::invalid_argument);
  EXPECT_THROW(quantize_row(GgmlType::kI32, x.data(), out.data(), 4), std::invalid_argument);
  EXPECT_THROW(quantize_matrix(GgmlType::kQ8_0, x.data(), out.data(), -1, 32),
               std::invalid_argument);
  EXPECT_FALSE(can_quantize(GgmlType::kMXFP4));
  EXPECT_TRUE(can_quantize(GgmlType::kBF16));
}

TEST(QuantizeThreads, ConcurrentEncodingMatchesSerial) {
  // 16 threads encode different rows at once (the first IQ2_XXS call may race to build the
  // encoder's tables); every row must equal its serial encoding.
  const int threads = 16;
  const int64_t cols = 512;
  const std::vector<float> x = gaussian(threads * cols, 14);
  const std::vector<float> qw(cols, 1.0f);
  const GgmlType types[] = {GgmlType::kIQ2_XXS, GgmlType::kQ2_K, GgmlType::kQ4_K, GgmlType::kQ8_0};
  std::vector<std::vector<uint8_t>> parallel(threads * 4);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (int k = 0; k < 4; ++k) {
        std::vector<uint8_t>& out = parallel[t * 4 + k];
        out.resize(row_bytes(types[k], cols));
        quantize_row(types[k], x.data() + t * cols, out.data(), cols, qw.data());
      }
    });
  }
  for (std::thread& th : pool) th.join();
  for (int t = 0; t < threads; ++t) {
    for (int k = 0; k < 4; ++k) {
      std::vector<uint8_t> serial(row_bytes(types[k], cols));
      quantize_row(types[k], x.data() + t * cols, serial.data(), cols, qw.data());
      EXPECT_EQ(parallel[t * 4 + k], serial) << t << " " << type_name(types[k]);
    }
  }
}

}  // namespace
}  // namespace magnetar::quant
