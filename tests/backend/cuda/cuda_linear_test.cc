// The GPU matrix and row kernels against the CPU reference: in the reference order
// (set_reference_order), linear_cuda and linear_experts_cuda must give cpu::linear's bits for every
// weight type, token count and stride; act_quant_fp8_cuda and rms_norm_rows_cuda those of
// cpu::act_quant_fp8 and cpu::rms_norm. The fast GEMV that linear_cuda uses by default has its own
// tests (cuda_gemv_test.cc). Needs a CUDA GPU.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/linear.h"
#include "backend/cpu/numerics.h"
#include "backend/cpu/thread_pool.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/device_array.h"
#include "backend/cuda/linear.cuh"
#include "backend/cuda/numerics.cuh"
#include "quant/quant.h"

namespace magnetar::gpu {
namespace {

using quant::GgmlType;

// Skips the calling test on a machine without a usable GPU.
#define REQUIRE_GPU() \
  if (!cuda_backend_usable()) GTEST_SKIP() << "no usable CUDA device"

// The CPU's summation order for the life of a test.
class ReferenceOrder {
 public:
  ReferenceOrder() { set_reference_order(true); }
  ~ReferenceOrder() { set_reference_order(false); }
  ReferenceOrder(const ReferenceOrder&) = delete;
  ReferenceOrder& operator=(const ReferenceOrder&) = delete;
};

std::vector<float> gaussian(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// A quantized matrix on both sides: the host bytes behind a model::WeightMatrix and their device
// copy.
struct TestMatrix {
  std::vector<uint8_t> bytes;
  DeviceArray<uint8_t> device;
  model::WeightMatrix host;
  DeviceMatrix gpu;

  TestMatrix(GgmlType type, int64_t rows, int64_t cols, int64_t experts, uint32_t seed) {
    const int64_t row_bytes = quant::row_bytes(type, cols);
    bytes.resize(static_cast<size_t>(rows * experts * row_bytes));
    for (int64_t e = 0; e < experts; ++e) {
      const std::vector<float> w = gaussian(static_cast<size_t>(rows * cols), seed + e, 0.05f);
      quant::quantize_matrix(type, w.data(), bytes.data() + e * rows * row_bytes, rows, cols);
    }
    device = DeviceArray<uint8_t>(std::span<const uint8_t>(bytes));
    host.name = "test";
    host.type = type;
    host.data = bytes.data();
    host.cols = cols;
    host.rows = rows;
    host.experts = experts;
    host.row_bytes = row_bytes;
    gpu.name = "test";
    gpu.type = type;
    gpu.data = device.data();
    gpu.cols = cols;
    gpu.rows = rows;
    gpu.row_bytes = row_bytes;
  }
};

void expect_same_bits(const std::vector<float>& gpu, const std::vector<float>& cpu,
                      const std::string& what) {
  ASSERT_EQ(gpu.size(), cpu.size()) << what;
  size_t differ = 0, first = 0;
  for (size_t i = 0; i < cpu.size(); ++i) {
    if (std::bit_cast<uint32_t>(gpu[i]) != std::bit_cast<uint32_t>(cpu[i]) && differ++ == 0) {
      first = i;
    }
  }
  EXPECT_EQ(differ, 0u) << what << ": first difference at " << first << ": GPU " << gpu[first]
                        << ", CPU " << cpu[first];
}

struct LinearCase {
  GgmlType type;
  int64_t cols;
};

class CudaLinear : public ::testing::TestWithParam<LinearCase> {};

TEST_P(CudaLinear, MatchesCpuBits) {
  REQUIRE_GPU();
  const ReferenceOrder reference;
  const auto [type, cols] = GetParam();
  const int64_t rows = 70;  // not a multiple of the 64-row tile
  TestMatrix m(type, rows, cols, 1, 3);
  cpu::ThreadPool pool(2);
  for (int64_t tokens : {1, 3, 8, 13}) {
    const std::vector<float> x = gaussian(static_cast<size_t>(tokens * cols), 100 + tokens);
    std::vector<float> expected(static_cast<size_t>(tokens * rows));
    cpu::linear(pool, m.host, x.data(), tokens, expected.data());
    DeviceArray<float> dx{std::span<const float>(x)};
    DeviceArray<float> dy(expected.size());
    linear_cuda(m.gpu, dx.data(), tokens, dy.data(), nullptr);
    MAGNETAR_CUDA_CHECK(cudaDeviceSynchronize());
    expect_same_bits(
        dy.download(), expected,
        std::string(quant::type_name(type)) + ", " + std::to_string(tokens) + " tokens");
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllTypes, CudaLinear,
    ::testing::Values(LinearCase{GgmlType::kF32, 100}, LinearCase{GgmlType::kF16, 196},
                      LinearCase{GgmlType::kBF16, 64}, LinearCase{GgmlType::kQ8_0, 160},
                      LinearCase{GgmlType::kQ2_K, 512}, LinearCase{GgmlType::kQ4_K, 256},
                      LinearCase{GgmlType::kIQ2_XXS, 512}),
    [](const ::testing::TestParamInfo<LinearCase>& info) {
      return std::string(quant::type_name(info.param.type));
    });

// Strided inputs and outputs (the grouped output projection): a row slice of the matrix reads
// every other block of x and writes into every other block of y.
TEST(CudaLinearStrides, RowSliceWithStrides) {
  REQUIRE_GPU();
  const ReferenceOrder reference;
  const int64_t rows = 40, cols = 64, tokens = 5;
  TestMatrix m(GgmlType::kQ8_0, rows, cols, 1, 9);
  cpu::ThreadPool pool(1);
  const std::vector<float> x = gaussian(static_cast<size_t>(tokens * 2 * cols), 4);
  DeviceArray<float> dx{std::span<const float>(x)};
  DeviceArray<float> dy(static_cast<size_t>(tokens * 2 * 20));
  MAGNETAR_CUDA_CHECK(cudaMemset(dy.data(), 0, dy.bytes()));
  // Rows 20..39 of W on the second half of each x row, into the second half of each y row.
  linear_cuda(m.gpu.row_slice(20, 20), dx.data() + cols, 2 * cols, tokens, dy.data() + 20, 40,
              nullptr);
  MAGNETAR_CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<float> y = dy.download();
  std::vector<float> u(static_cast<size_t>(tokens * cols)),
      expected(static_cast<size_t>(tokens * 20));
  for (int64_t t = 0; t < tokens; ++t) {
    std::memcpy(&u[t * cols], &x[t * 2 * cols + cols], cols * sizeof(float));
  }
  cpu::linear(pool, cpu::row_slice(m.host, 20, 20), u.data(), tokens, expected.data());
  std::vector<float> got;
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t r = 0; r < 20; ++r) {
      got.push_back(y[t * 40 + 20 + r]);
      EXPECT_EQ(y[t * 40 + r], 0.0f) << "wrote outside its rows";
    }
  }
  expect_same_bits(got, expected, "row slice");
}

// Each (token, slot) pair through its own expert, as cpu::moe_chunk runs them.
TEST(CudaLinearExperts, PairsMatchCpuBits) {
  REQUIRE_GPU();
  const ReferenceOrder reference;
  const int64_t experts = 5, rows = 48, cols = 256, tokens = 4, used = 3;
  for (GgmlType type : {GgmlType::kIQ2_XXS, GgmlType::kQ2_K, GgmlType::kQ4_K, GgmlType::kF32}) {
    TestMatrix m(type, rows, cols, experts, 21);
    std::vector<const uint8_t*> table;
    for (int64_t e = 0; e < experts; ++e) table.push_back(m.gpu.data + e * rows * m.gpu.row_bytes);
    DeviceArray<const uint8_t*> dtable{std::span<const uint8_t* const>(table)};
    DeviceExperts dexp{m.gpu, experts, dtable.data()};
    const std::vector<int32_t> ids = {4, 0, 2, 1, 1, 3, 0, 4, 2, 3, 2, 4};
    DeviceArray<int32_t> dids{std::span<const int32_t>(ids)};
    const std::vector<float> x = gaussian(static_cast<size_t>(tokens * cols), 8);
    DeviceArray<float> dx{std::span<const float>(x)};
    DeviceArray<float> dy(static_cast<size_t>(tokens * used * rows));
    linear_experts_cuda(dexp, dids.data(), tokens * used, dx.data(), used, dy.data(), nullptr);
    MAGNETAR_CUDA_CHECK(cudaDeviceSynchronize());
    cpu::ThreadPool pool(1);
    std::vector<float> expected(dy.size());
    for (int64_t p = 0; p < tokens * used; ++p) {
      model::WeightMatrix e = m.host.expert(ids[p]);
      cpu::linear(pool, e, x.data() + (p / used) * cols, 1, expected.data() + p * rows);
    }
    expect_same_bits(dy.download(), expected, std::string(quant::type_name(type)) + " experts");
  }
}

TEST(CudaNumerics, ActQuantMatchesCpuBits) {
  REQUIRE_GPU();
  const int64_t rows = 6, cols = 300;  // a ragged last block of 44 values
  std::vector<float> x = gaussian(static_cast<size_t>(rows * cols), 12, 3.0f);
  x[7] = 0.0f;
  x[8] = -0.0f;
  std::vector<float> expected(x.size());
  cpu::act_quant_fp8(x.data(), rows, cols, true, expected.data());
  DeviceArray<float> dx{std::span<const float>(x)};
  DeviceArray<float> dy(x.size());
  act_quant_fp8_cuda(dx.data(), rows, cols, dy.data(), nullptr);
  MAGNETAR_CUDA_CHECK(cudaDeviceSynchronize());
  expect_same_bits(dy.download(), expected, "act_quant_fp8");

  std::vector<float> fp4 = x;
  for (int64_t r = 0; r < rows; ++r) cpu::fp4_simulate(fp4.data() + r * cols, cols, 32);
  fp4_simulate_rows_cuda(dx.data(), rows, cols, 32, nullptr);
  MAGNETAR_CUDA_CHECK(cudaDeviceSynchronize());
  expect_same_bits(dx.download(), fp4, "fp4_simulate");
}

TEST(CudaNumerics, RmsNormMatchesCpuBits) {
  REQUIRE_GPU();
  const int64_t rows = 9, dim = 4096;
  const std::vector<float> x = gaussian(static_cast<size_t>(rows * dim), 13, 2.0f);
  const std::vector<float> w = gaussian(static_cast<size_t>(dim), 14);
  DeviceArray<float> dx{std::span<const float>(x)};
  DeviceArray<float> dw{std::span<const float>(w)};
  DeviceArray<float> dy(x.size());
  for (bool weighted : {true, false}) {
    std::vector<float> expected(x.size());
    for (int64_t r = 0; r < rows; ++r) {
      cpu::rms_norm(x.data() + r * dim, weighted ? w.data() : nullptr, expected.data() + r * dim,
                    dim, 1e-6f);
    }
    rms_norm_rows_cuda(dx.data(), weighted ? dw.data() : nullptr, dy.data(), rows, dim, 1e-6f,
                       nullptr);
    MAGNETAR_CUDA_CHECK(cudaDeviceSynchronize());
    expect_same_bits(dy.download(), expected, weighted ? "weighted" : "unweighted");
  }
}

TEST(CudaLinearArguments, RejectsColumnsNotMultipleOf4) {
  DeviceMatrix m;
  m.cols = 6;
  m.rows = 2;
  EXPECT_THROW(linear_cuda(m, nullptr, 1, nullptr, nullptr), std::invalid_argument);
}

}  // namespace
}  // namespace magnetar::gpu
