// The tensor-core products (gemm_tc.cuh, f16_convert.cuh) against independent host computations:
// the f16 weights are the CPU decoder's values rounded by quant::f32_to_f16, bit for bit; every
// product lies within the error bound of gemm_tc.cuh around a double-precision product of the
// CPU-decoded weights; linear_cuda dispatches by token count only while a path is installed.
// Needs a CUDA GPU, except the argument checks.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "backend/cpu/linear.h"
#include "backend/cpu/thread_pool.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/f16_convert.cuh"
#include "backend/cuda/gemm_tc.cuh"
#include "backend/cuda/linear.cuh"
#include "gpu_test_weights.h"
#include "quant/fp16.h"

namespace magnetar::gpu {
namespace {

using quant::GgmlType;
using testing::gaussian;
using testing::TestExperts;
using testing::TestWeights;

#define REQUIRE_GPU() \
  if (!cuda_backend_usable()) GTEST_SKIP() << "no usable CUDA device"

constexpr float kPoison = std::numeric_limits<float>::quiet_NaN();

// The bound of gemm_tc.cuh for one output over K terms: relative to Σ|w·x|, plus the absolute
// errors of f16 subnormals (weights under 2^-14: 2^-25 each; activations under 2^-28 of the call's
// largest |x|: 2^-39 of it), doubled for slack on the subnormal terms.
double f16_product_bound(double abs_sum, double sum_x, double sum_w, double amax_x, int64_t k) {
  const double relative = std::ldexp(1.0, -10) + std::ldexp(1.0, -22) + k * std::ldexp(1.0, -24);
  return relative * abs_sum + std::ldexp(1.0, -24) * sum_x + std::ldexp(1.0, -38) * amax_x * sum_w;
}

// Checks y (n_tokens rows of y_stride floats, outputs in the first `rows`) against the double
// product of w (rows × cols) and x (n_tokens × cols): each output within the bound, the whole
// within 2e-3 in norm (the typical error is 4e-4), and nothing written past `rows`.
void expect_close_to_product(const std::vector<float>& y, int64_t y_stride,
                             const std::vector<float>& w, const std::vector<float>& x, int64_t rows,
                             int64_t cols, int64_t n_tokens, const std::string& what) {
  double amax_x = 0;
  for (float v : x) amax_x = std::max(amax_x, std::abs(double(v)));
  double diff2 = 0, ref2 = 0;
  int64_t outside = 0, first_bad = -1;
  for (int64_t t = 0; t < n_tokens; ++t) {
    double sum_x = 0;
    for (int64_t k = 0; k < cols; ++k) sum_x += std::abs(double(x[t * cols + k]));
    for (int64_t n = 0; n < rows; ++n) {
      double ref = 0, abs_sum = 0, sum_w = 0;
      for (int64_t k = 0; k < cols; ++k) {
        const double p = double(w[n * cols + k]) * x[t * cols + k];
        ref += p;
        abs_sum += std::abs(p);
        sum_w += std::abs(double(w[n * cols + k]));
      }
      const double got = y[t * y_stride + n];
      const double d = std::abs(got - ref);
      diff2 += d * d;
      ref2 += ref * ref;
      if (!(d <= f16_product_bound(abs_sum, sum_x, sum_w, amax_x, cols)) && outside++ == 0) {
        first_bad = t * y_stride + n;
      }
    }
    for (int64_t n = rows; n < y_stride; ++n) {
      EXPECT_TRUE(std::isnan(y[t * y_stride + n])) << what << ": wrote past the rows";
    }
  }
  EXPECT_EQ(outside, 0) << what << ": first output outside the bound at " << first_bad;
  EXPECT_LE(std::sqrt(diff2 / ref2), 2e-3) << what;
}

struct GemmCase {
  GgmlType type;
  int64_t cols;
};

class TensorCoreLinear : public ::testing::TestWithParam<GemmCase> {};

// Odd row counts, token counts around the default threshold, a strided output.
TEST_P(TensorCoreLinear, WithinBoundOfDoubleProduct) {
  REQUIRE_GPU();
  const auto [type, cols] = GetParam();
  TensorCoreGemm gemm;
  for (int64_t rows : {70, 333}) {
    TestWeights m(type, rows, cols, 1, 7);
    const std::vector<float> w = m.decoded();
    for (int64_t tokens : {1, 31, 32, 33, 100}) {
      const int64_t y_stride = rows + 3;
      const std::vector<float> x = gaussian(static_cast<size_t>(tokens * cols), 50 + tokens);
      DeviceArray<float> dx{std::span<const float>(x)};
      std::vector<float> poison(static_cast<size_t>(tokens * y_stride), kPoison);
      DeviceArray<float> dy{std::span<const float>(poison)};
      gemm.linear(m.gpu, dx.data(), cols, tokens, dy.data(), y_stride, nullptr);
      MAGNETAR_CUDA_CHECK(cudaDeviceSynchronize());
      expect_close_to_product(dy.download(), y_stride, w, x, rows, cols, tokens,
                              std::string(quant::type_name(type)) + ", " + std::to_string(rows) +
                                  " rows, " + std::to_string(tokens) + " tokens");
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllTypes, TensorCoreLinear,
    ::testing::Values(GemmCase{GgmlType::kF32, 100}, GemmCase{GgmlType::kF16, 196},
                      GemmCase{GgmlType::kF16, 256}, GemmCase{GgmlType::kBF16, 64},
                      GemmCase{GgmlType::kQ8_0, 160}, GemmCase{GgmlType::kQ2_K, 512},
                      GemmCase{GgmlType::kQ4_K, 256}, GemmCase{GgmlType::kIQ2_XXS, 512}),
    [](const ::testing::TestParamInfo<GemmCase>& info) {
      // F16 with 256 columns has 16-byte rows: the in-place case.
      return std::string(quant::type_name(info.param.type)) + "_" + std::to_string(info.param.cols);
    });

// A weight scratch smaller than the matrix: the product runs in slices of rows.
TEST(TensorCoreLinearSlices, SmallScratchSlicesRows) {
  REQUIRE_GPU();
  TensorCoreOptions o;
  o.weight_scratch_bytes = size_t{1} << 20;  // 1 MiB: 128 rows of 4096 values
  TensorCoreGemm gemm(o);
  const int64_t rows = 300, cols = 4096, tokens = 40;
  TestWeights m(GgmlType::kQ8_0, rows, cols, 1, 11);
  const std::vector<float> x = gaussian(static_cast<size_t>(tokens * cols), 12);
  DeviceArray<float> dx{std::span<const float>(x)};
  std::vector<float> poison(static_cast<size_t>(tokens * rows), kPoison);
  DeviceArray<float> dy{std::span<const float>(poison)};
  gemm.linear(m.gpu, dx.data(), cols, tokens, dy.data(), rows, nullptr);
  MAGNETAR_CUDA_CHECK(cudaDeviceSynchronize());
  expect_close_to_product(dy.download(), rows, m.decoded(), x, rows, cols, tokens, "slices");
}

// Activations far outside the f16 range (and far below it) are scaled on the device: without the
// scale the first case would give infinities and the second mostly zeros.
TEST(TensorCoreLinearRange, HugeAndTinyActivations) {
  REQUIRE_GPU();
  TensorCoreGemm gemm;
  const int64_t rows = 64, cols = 256, tokens = 48;
  TestWeights m(GgmlType::kQ8_0, rows, cols, 1, 13);
  for (float magnitude : {3e6f, 1e-7f}) {
    const std::vector<float> x = gaussian(static_cast<size_t>(tokens * cols), 14, magnitude);
    DeviceArray<float> dx{std::span<const float>(x)};
    std::vector<float> poison(static_cast<size_t>(tokens * rows), kPoison);
    DeviceArray<float> dy{std::span<const float>(poison)};
    gemm.linear(m.gpu, dx.data(), cols, tokens, dy.data(), rows, nullptr);
    MAGNETAR_CUDA_CHECK(cudaDeviceSynchronize());
    expect_close_to_product(dy.download(), rows, m.decoded(), x, rows, cols, tokens,
                            "activations of magnitude " + std::to_string(magnitude));
  }
}

// While a path is installed, linear_cuda keeps the CPU's bits below min_tokens and takes the
// tensor cores from there; without one it keeps them at any count.
TEST(TensorCoreDispatch, ThresholdAndScope) {
  REQUIRE_GPU();
  const int64_t rows = 70, cols = 256;
  TestWeights m(GgmlType::kQ4_K, rows, cols, 1, 17);
  TensorCoreGemm gemm;
  cpu::ThreadPool pool(2);
  auto cpu_bits = [&](const std::vector<float>& x, int64_t tokens) {
    std::vector<float> y(static_cast<size_t>(tokens * rows));
    cpu::linear(pool, m.host, x.data(), tokens, y.data());
    return y;
  };
  auto gpu_linear = [&](const std::vector<float>& x, int64_t tokens) {
    DeviceArray<float> dx{std::span<const float>(x)};
    DeviceArray<float> dy(static_cast<size_t>(tokens * rows));
    linear_cuda(m.gpu, dx.data(), tokens, dy.data(), nullptr);
    MAGNETAR_CUDA_CHECK(cudaDeviceSynchronize());
    return dy.download();
  };
  auto same = [](const std::vector<float>& a, const std::vector<float>& b) {
    for (size_t i = 0; i < a.size(); ++i) {
      if (std::bit_cast<uint32_t>(a[i]) != std::bit_cast<uint32_t>(b[i])) return false;
    }
    return a.size() == b.size();
  };
  const int64_t below = gemm.options().min_tokens - 1, at = gemm.options().min_tokens;
  const std::vector<float> x_below = gaussian(static_cast<size_t>(below * cols), 18);
  const std::vector<float> x_at = gaussian(static_cast<size_t>(at * cols), 19);
  {
    ScopedTensorCoreGemm scope(&gemm);
    EXPECT_EQ(current_tensor_core_gemm(), &gemm);
    EXPECT_TRUE(same(gpu_linear(x_below, below), cpu_bits(x_below, below)));
    const std::vector<float> fast = gpu_linear(x_at, at);
    EXPECT_FALSE(same(fast, cpu_bits(x_at, at))) << "the tensor-core path was not taken";
    DeviceArray<float> dx{std::span<const float>(x_at)};
    DeviceArray<float> dy(fast.size());
    gemm.linear(m.gpu, dx.data(), cols, at, dy.data(), rows, nullptr);
    MAGNETAR_CUDA_CHECK(cudaDeviceSynchronize());
    EXPECT_TRUE(same(fast, dy.download()));
    {
      ScopedTensorCoreGemm none(nullptr);
      EXPECT_TRUE(same(gpu_linear(x_at, at), cpu_bits(x_at, at)));
    }
    EXPECT_EQ(current_tensor_core_gemm(), &gemm);
  }
  EXPECT_EQ(current_tensor_core_gemm(), nullptr);
  EXPECT_TRUE(same(gpu_linear(x_at, at), cpu_bits(x_at, at)));
}

// Decoding to f16 is the CPU decoder followed by one rounding to nearest even, bit for bit; the
// expert form takes the matrices named by the id list, in its order.
TEST(F16Decode, MatchesCpuDecoderRounded) {
  REQUIRE_GPU();
  for (GgmlType type : {GgmlType::kF32, GgmlType::kF16, GgmlType::kBF16, GgmlType::kQ8_0,
                        GgmlType::kQ2_K, GgmlType::kQ4_K, GgmlType::kIQ2_XXS}) {
    SCOPED_TRACE(std::string(quant::type_name(type)));
    const int64_t rows = 40, cols = 512, experts = 3;
    TestExperts m(type, rows, cols, experts, 23);
    auto expected_rows = [&](int64_t e, int64_t first, int64_t n) {
      const std::vector<float> w = m.weights.decoded(e);
      std::vector<uint16_t> out;
      for (int64_t i = first * cols; i < (first + n) * cols; ++i) {
        out.push_back(quant::f32_to_f16(w[i]));
      }
      return out;
    };
    DeviceArray<uint16_t> dst(static_cast<size_t>(experts * rows * cols));
    decode_rows_f16_cuda(m.weights.gpu, 5, 30, dst.data(), nullptr);
    MAGNETAR_CUDA_CHECK(cudaDeviceSynchronize());
    EXPECT_EQ(dst.download(30 * cols), expected_rows(0, 5, 30));

    const std::vector<int32_t> ids = {2, 0, 2};
    DeviceArray<int32_t> dids{std::span<const int32_t>(ids)};
    const int64_t stride = rows * cols + 8;
    DeviceArray<uint16_t> all(static_cast<size_t>(ids.size() * stride));
    decode_experts_f16_cuda(m.gpu, dids.data(), 3, all.data(), stride, nullptr);
    MAGNETAR_CUDA_CHECK(cudaDeviceSynchronize());
    const std::vector<uint16_t> got = all.download();
    for (size_t i = 0; i < ids.size(); ++i) {
      const std::vector<uint16_t> slot(got.begin() + i * stride,
                                       got.begin() + i * stride + rows * cols);
      EXPECT_EQ(slot, expected_rows(ids[i], 0, rows)) << "slot " << i;
    }
  }
}

// The activation scale: a power of two putting the largest magnitude in [2^14, 2^15), 1 for
// zeros and non-finite values; the conversion rounds x · scale to nearest even.
TEST(F16Scale, PowerOfTwoFromLargestMagnitude) {
  REQUIRE_GPU();
  DeviceArray<F16Scale> scale(1);
  auto measure = [&](std::vector<float> x) {
    DeviceArray<float> dx{std::span<const float>(x)};
    measure_f16_scale_cuda(dx.data(), 2, static_cast<int64_t>(x.size() / 2), 1, scale.data(),
                           nullptr);
    return scale.download()[0];
  };
  // Only the even elements are read (stride 2, one column).
  F16Scale s = measure({-3.0f, 1e30f, 0.5f, 1e30f});
  EXPECT_EQ(s.scale, std::ldexp(1.0f, 13));  // 3 · 2^13 = 24576
  EXPECT_EQ(s.inverse, std::ldexp(1.0f, -13));
  EXPECT_EQ(s.zero, 0.0f);
  EXPECT_EQ(measure({1e9f, 0.0f}).scale, std::ldexp(1.0f, -15));  // 1e9 ∈ [2^29, 2^30)
  EXPECT_EQ(measure({0.0f, 5.0f}).scale, 1.0f);
  EXPECT_EQ(measure({std::numeric_limits<float>::infinity(), 0.0f}).scale, 1.0f);
  EXPECT_EQ(measure({kPoison, 0.0f, 1.0f, 0.0f}).scale, 1.0f);

  const std::vector<float> x = {1e-6f, -2.5e-3f, 7.0f, 0.0f, -65504.0f, 123.456f};
  DeviceArray<float> dx{std::span<const float>(x)};
  measure_f16_scale_cuda(dx.data(), 3, 2, 3, scale.data(), nullptr);
  DeviceArray<uint16_t> dst(x.size());
  rows_to_f16_cuda(dx.data(), 3, 2, 3, scale.data(), dst.data(), nullptr);
  MAGNETAR_CUDA_CHECK(cudaDeviceSynchronize());
  const float k = scale.download()[0].scale;
  EXPECT_EQ(k, std::ldexp(1.0f, -1));  // 65504 ∈ [2^15, 2^16)
  std::vector<uint16_t> expected;
  for (float v : x) expected.push_back(quant::f32_to_f16(v * k));
  EXPECT_EQ(dst.download(), expected);
}

TEST(TensorCoreArguments, BadInputsAreRefused) {
  TensorCoreOptions o;
  o.min_tokens = 0;
  EXPECT_THROW(TensorCoreGemm{o}, std::invalid_argument);
  o = {};
  o.weight_scratch_bytes = 1000;
  EXPECT_THROW(TensorCoreGemm{o}, std::invalid_argument);
  DeviceMatrix m;
  m.type = GgmlType::kQ8_0;
  m.cols = 6;
  m.rows = 2;
  EXPECT_THROW(decode_rows_f16_cuda(m, 0, 1, nullptr, nullptr), std::invalid_argument);
  m.cols = 32;
  EXPECT_THROW(decode_rows_f16_cuda(m, 1, 2, nullptr, nullptr), std::invalid_argument);
  EXPECT_THROW(decode_rows_f16_cuda(m, -1, 1, nullptr, nullptr), std::invalid_argument);
  m.type = GgmlType::kQ8_K;  // an activation format: no weight decoder
  EXPECT_THROW(decode_rows_f16_cuda(m, 0, 1, nullptr, nullptr), std::invalid_argument);
}

}  // namespace
}  // namespace magnetar::gpu
