// CPU dot products (shared/spec/gguf.md §4.8): each kernel, on each instruction set, equals the
// float64 dot product of the decoded weight row and the decoded activation row.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "quant/blocks.h"
#include "quant/quant.h"
#include "test_util.h"

namespace magnetar::quant {
namespace {

using testing::gaussian;

// The activation row as the kernels see it, decoded independently of the library where the
// format is internal (BlockQ8_0F), through dequantize_row for Q8_K.
std::vector<float> decode_activation(GgmlType weight, const std::vector<uint8_t>& a, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  switch (activation_format(weight)) {
    case ActivationFormat::kF32:
      std::memcpy(out.data(), a.data(), out.size() * sizeof(float));
      break;
    case ActivationFormat::kQ8_0F: {
      const auto* blocks = reinterpret_cast<const BlockQ8_0F*>(a.data());
      for (int64_t i = 0; i < n; ++i) out[i] = blocks[i / 32].d * blocks[i / 32].qs[i % 32];
      break;
    }
    case ActivationFormat::kQ8_K:
      dequantize_row(GgmlType::kQ8_K, a.data(), out.data(), n);
      break;
  }
  return out;
}

struct Row {
  std::vector<uint8_t> weights;
  std::vector<uint8_t> activations;
  double exact = 0;      // float64 dot of the decoded rows
  double tolerance = 0;  // see below
};

// The kernels form exact integer sums per block (or read exact floats) and round only when they
// scale and accumulate in f32, in at least k = 8 parallel accumulators of n / k terms each. Each
// rounding is at most 2^-24 relative; the worst case adds them all up (n / k + log2 k terms), but
// independent roundings grow like the square root of their count, so we allow 4 standard
// deviations of that: 4 * sqrt(n / 8 + 8) * 2^-24 times the sum of the magnitudes of the rounded
// terms. For the K-quants a block contributes d*sc*q*a and dmin*m*a separately, whose magnitudes
// are bounded by (|w| + 2 max|w|) |a| per element. (Observed errors are ~3e-8 of sum |w a|, some
// 100 times below this tolerance; a wrong scale or a dropped sub-block is far above it.)
Row make_row(GgmlType weight, int64_t n, uint32_t seed) {
  Row row;
  const std::vector<float> w = gaussian(n, seed, 0.05f);
  const std::vector<float> x = gaussian(n, seed + 1000, 2.0f);
  row.weights.resize(row_bytes(weight, n));
  quantize_row(weight, w.data(), row.weights.data(), n);
  row.activations.resize(activation_row_bytes(weight, n));
  quantize_activation_row(weight, x.data(), row.activations.data(), n);

  std::vector<float> wd(static_cast<size_t>(n));
  dequantize_row(weight, row.weights.data(), wd.data(), n);
  const std::vector<float> xd = decode_activation(weight, row.activations, n);
  double max_w = 0;
  for (float v : wd) max_w = std::max(max_w, std::fabs(static_cast<double>(v)));
  double magnitude = 0;
  for (int64_t i = 0; i < n; ++i) {
    row.exact += static_cast<double>(wd[i]) * xd[i];
    magnitude += (std::fabs(static_cast<double>(wd[i])) + 2 * max_w) * std::fabs(xd[i]);
  }
  row.tolerance = 4 * std::sqrt(static_cast<double>(n) / 8 + 8) * std::ldexp(1.0, -24) * magnitude;
  return row;
}

class DotTest : public ::testing::TestWithParam<GgmlType> {};

TEST_P(DotTest, MatchesFloat64OfDecodedRows) {
  const GgmlType weight = GetParam();
  for (int64_t n : {int64_t{256}, int64_t{4096}, int64_t{7168}}) {
    for (uint32_t seed = 1; seed <= 5; ++seed) {
      const Row row = make_row(weight, n, seed);
      const float portable =
          vec_dot_isa(CpuIsa::kPortable, weight, n, row.weights.data(), row.activations.data());
      EXPECT_NEAR(portable, row.exact, row.tolerance) << n << " " << seed;
      EXPECT_NEAR(vec_dot(weight, n, row.weights.data(), row.activations.data()), row.exact,
                  row.tolerance);
      EXPECT_NEAR(dot_kernel(weight)(n, row.weights.data(), row.activations.data()), row.exact,
                  row.tolerance);
      if (cpu_isa_supported(CpuIsa::kAvx2)) {
        const float avx2 =
            vec_dot_isa(CpuIsa::kAvx2, weight, n, row.weights.data(), row.activations.data());
        EXPECT_NEAR(avx2, row.exact, row.tolerance) << n << " " << seed;
        EXPECT_NEAR(avx2, portable, row.tolerance) << n << " " << seed;
      }
    }
  }
}

TEST_P(DotTest, ActivationFormatAndSizes) {
  const GgmlType weight = GetParam();
  const int64_t n = 512;
  switch (weight) {
    case GgmlType::kQ8_0:
      EXPECT_EQ(activation_format(weight), ActivationFormat::kQ8_0F);
      EXPECT_EQ(activation_row_bytes(weight, n), n / 32 * 36);
      break;
    case GgmlType::kQ2_K:
    case GgmlType::kQ4_K:
    case GgmlType::kIQ2_XXS:
      EXPECT_EQ(activation_format(weight), ActivationFormat::kQ8_K);
      EXPECT_EQ(activation_row_bytes(weight, n), n / 256 * 292);
      break;
    default:
      EXPECT_EQ(activation_format(weight), ActivationFormat::kF32);
      EXPECT_EQ(activation_row_bytes(weight, n), n * 4);
      break;
  }
  const int64_t bad = type_info(weight).block_elems == 1 ? -1 : type_info(weight).block_elems + 8;
  std::vector<uint8_t> buf(1 << 16);
  std::vector<float> x(1024);
  EXPECT_THROW(vec_dot(weight, bad, buf.data(), buf.data()), std::invalid_argument);
  EXPECT_THROW(activation_row_bytes(weight, bad), std::invalid_argument);
  EXPECT_THROW(quantize_activation_row(weight, x.data(), buf.data(), bad), std::invalid_argument);
}

TEST_P(DotTest, ZeroRowsGiveZero) {
  const GgmlType weight = GetParam();
  const int64_t n = 512;
  const std::vector<float> zero(n, 0.0f);
  const std::vector<float> x = gaussian(n, 3);
  std::vector<uint8_t> w(row_bytes(weight, n));
  std::vector<uint8_t> a(activation_row_bytes(weight, n));
  quantize_row(weight, zero.data(), w.data(), n);
  quantize_activation_row(weight, x.data(), a.data(), n);
  for (CpuIsa isa : {CpuIsa::kPortable, CpuIsa::kAvx2}) {
    if (!cpu_isa_supported(isa)) continue;
    EXPECT_EQ(vec_dot_isa(isa, weight, n, w.data(), a.data()), 0.0f);
    EXPECT_EQ(vec_dot_isa(isa, weight, 0, w.data(), a.data()), 0.0f);
  }
}

INSTANTIATE_TEST_SUITE_P(Weights, DotTest,
                         ::testing::Values(GgmlType::kF32, GgmlType::kF16, GgmlType::kBF16,
                                           GgmlType::kQ8_0, GgmlType::kQ2_K, GgmlType::kQ4_K,
                                           GgmlType::kIQ2_XXS),
                         [](const auto& info) { return std::string(type_name(info.param)); });

TEST(Dot, FloatRowsOfAnyLength) {
  // Plain types have 1-element blocks: lengths that are not a multiple of the SIMD width take the
  // scalar tail.
  for (GgmlType weight : {GgmlType::kF32, GgmlType::kF16, GgmlType::kBF16}) {
    for (int64_t n : {1, 7, 37, 100}) {
      const Row row = make_row(weight, n, 9);
      for (CpuIsa isa : {CpuIsa::kPortable, CpuIsa::kAvx2}) {
        if (!cpu_isa_supported(isa)) continue;
        EXPECT_NEAR(vec_dot_isa(isa, weight, n, row.weights.data(), row.activations.data()),
                    row.exact, row.tolerance)
            << type_name(weight) << " " << n;
      }
    }
  }
}

TEST(Dot, Q8_0ActivationsUseF32ScaleAndRoundToEven) {
  // amax = 127 gives d = 1 exactly: ties round to even (lrintf), unlike Q8_0 weights (roundf).
  float x[32] = {127.0f, 0.5f, 1.5f, 2.5f, -2.5f, -0.5f, 3.25f};
  BlockQ8_0F a;
  quantize_activation_row(GgmlType::kQ8_0, x, &a, 32);
  EXPECT_EQ(a.d, 1.0f);
  const int expected[7] = {127, 0, 2, 2, -2, 0, 3};
  for (int i = 0; i < 7; ++i) EXPECT_EQ(a.qs[i], expected[i]) << i;
  // The scale is amax / 127 in f32, not rounded to f16.
  x[0] = 100.0f;
  quantize_activation_row(GgmlType::kQ8_0, x, &a, 32);
  EXPECT_EQ(a.d, 100.0f / 127.0f);
}

TEST(Dot, IsaSelection) {
  const char* forced = std::getenv("MAGNETAR_CPU_ISA");
  if (forced != nullptr && std::string(forced) == "portable") {
    EXPECT_EQ(active_cpu_isa(), CpuIsa::kPortable);
  } else {
    EXPECT_EQ(active_cpu_isa(),
              cpu_isa_supported(CpuIsa::kAvx2) ? CpuIsa::kAvx2 : CpuIsa::kPortable);
  }
  EXPECT_EQ(cpu_isa(), active_cpu_isa() == CpuIsa::kAvx2 ? "avx2" : "portable");
  EXPECT_TRUE(cpu_isa_supported(CpuIsa::kPortable));
  EXPECT_THROW(activation_format(GgmlType::kQ8_K), std::invalid_argument);
  EXPECT_THROW(dot_kernel(GgmlType::kQ6_K), std::invalid_argument);
  EXPECT_FALSE(can_dot(GgmlType::kQ8_K));
}

}  // namespace
}  // namespace magnetar::quant
