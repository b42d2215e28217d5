// The fast GEMV kernels (gemv.cuh) against a double-precision product of the CPU's dequantized
// weights, and their invariances: a token gets the same bits alone or in a batch, an expert pair
// the same bits as the dense product with its expert. Needs a CUDA GPU.
//
// Tolerance: |y - y_exact| ≤ 1e-5 · Σ_k |w_k x_k| for every output. The kernels sum exact f32
// weights times f32 activations in fp32 with short chains (linear.cuh): the typical error is
// √K · 2^-24 ≈ 4e-6 of Σ|w x| at K = 4096 and far less at the test shapes, while one wrong
// weight (a misplaced code, a wrong scale, a lost block) moves an output by ~|w x|, about 1/K of
// Σ|w x| for random data: 2.4e-4 at K = 4096, well above the bound.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/device_array.h"
#include "backend/cuda/gemv.cuh"
#include "backend/cuda/linear.cuh"
#include "quant/fp16.h"
#include "quant/quant.h"

namespace magnetar::gpu {
namespace {

using quant::GgmlType;

#define REQUIRE_GPU() \
  if (!cuda_backend_usable()) GTEST_SKIP() << "no usable CUDA device"

constexpr double kTolerance = 1e-5;

std::vector<float> gaussian(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// Byte offsets of the f16 scale fields in a block of each quantized type.
std::vector<int> scale_fields(GgmlType type) {
  switch (type) {
    case GgmlType::kQ8_0:
    case GgmlType::kIQ2_XXS:
      return {0};
    case GgmlType::kQ2_K:
      return {80, 82};
    case GgmlType::kQ4_K:
      return {0, 2};
    default:
      return {};
  }
}

// `rows` × `cols` weights of `type`: uniformly random bytes (every code, grid index, sign index
// and sub-block scale occurs), with finite f16 scales; F32/F16/BF16 from Gaussian values.
std::vector<uint8_t> random_rows(GgmlType type, int64_t rows, int64_t cols, uint32_t seed) {
  const int64_t row_bytes = quant::row_bytes(type, cols);
  std::vector<uint8_t> bytes(static_cast<size_t>(rows * row_bytes));
  std::mt19937 rng(seed);
  if (type == GgmlType::kF32 || type == GgmlType::kF16 || type == GgmlType::kBF16) {
    const std::vector<float> w = gaussian(static_cast<size_t>(rows * cols), seed, 0.05f);
    quant::quantize_matrix(type, w.data(), bytes.data(), rows, cols);
    return bytes;
  }
  for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng());
  const quant::TypeInfo& info = quant::type_info(type);
  std::uniform_real_distribution<float> scale(0.001f, 0.01f);
  for (size_t block = 0; block < bytes.size() / info.block_bytes; ++block) {
    for (int field : scale_fields(type)) {
      const uint16_t h = quant::f32_to_f16(scale(rng));
      std::memcpy(&bytes[block * info.block_bytes + field], &h, 2);
    }
  }
  return bytes;
}

// A matrix in both places: its bytes, the CPU's decoded floats and the device copy.
struct Matrix {
  GgmlType type;
  int64_t rows, cols, row_bytes;
  std::vector<uint8_t> bytes;
  std::vector<float> values;  // rows × cols, exactly the CPU's weights
  DeviceArray<uint8_t> device;

  Matrix(GgmlType type, int64_t rows, int64_t cols, uint32_t seed)
      : type(type), rows(rows), cols(cols), row_bytes(quant::row_bytes(type, cols)) {
    bytes = random_rows(type, rows, cols, seed);
    values.resize(static_cast<size_t>(rows * cols));
    for (int64_t r = 0; r < rows; ++r) {
      quant::dequantize_row(type, bytes.data() + r * row_bytes, values.data() + r * cols, cols);
    }
    device = DeviceArray<uint8_t>(std::span<const uint8_t>(bytes));
  }
  DeviceMatrix gpu() const {
    DeviceMatrix m;
    m.name = "test";
    m.type = type;
    m.data = device.data();
    m.cols = cols;
    m.rows = rows;
    m.row_bytes = row_bytes;
    return m;
  }
};

// Checks y (n_tokens × rows, row stride y_stride) against the exact product of the rows × cols
// weights w with x (n_tokens rows of stride x_stride).
void expect_close(const std::vector<float>& y, int64_t y_stride, const float* w, int64_t rows,
                  int64_t cols, const std::vector<float>& x, int64_t x_stride, int64_t n_tokens,
                  const std::string& what) {
  double err2 = 0, ref2 = 0;
  int64_t bad = 0;
  std::string first;
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t r = 0; r < rows; ++r) {
      double exact = 0, magnitude = 0;
      for (int64_t k = 0; k < cols; ++k) {
        const double p = double(w[r * cols + k]) * x[t * x_stride + k];
        exact += p;
        magnitude += std::abs(p);
      }
      const double got = y[t * y_stride + r];
      const double err = std::abs(got - exact);
      err2 += err * err;
      ref2 += exact * exact;
      if (!(err <= kTolerance * magnitude) && bad++ == 0) {
        first = "token " + std::to_string(t) + " row " + std::to_string(r) + ": got " +
                std::to_string(got) + ", exact " + std::to_string(exact) + ", Σ|wx| " +
                std::to_string(magnitude);
      }
    }
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " outputs off, first " << first;
  EXPECT_LE(std::sqrt(err2 / ref2), kTolerance) << what;
}
void expect_close(const std::vector<float>& y, int64_t y_stride, const Matrix& m,
                  const std::vector<float>& x, int64_t x_stride, int64_t n_tokens,
                  const std::string& what) {
  expect_close(y, y_stride, m.values.data(), m.rows, m.cols, x, x_stride, n_tokens, what);
}

bool same_bits(const float* a, const float* b, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (std::bit_cast<uint32_t>(a[i]) != std::bit_cast<uint32_t>(b[i])) return false;
  }
  return true;
}

std::vector<float> run_gemv(const DeviceMatrix& m, const std::vector<float>& x, int64_t n_tokens) {
  DeviceArray<float> dx{std::span<const float>(x)};
  DeviceArray<float> dy(static_cast<size_t>(n_tokens * m.rows));
  gemv_cuda(m, dx.data(), m.cols, n_tokens, dy.data(), m.rows, nullptr);
  MAGNETAR_CUDA_CHECK(cudaDeviceSynchronize());
  return dy.download();
}

struct Shape {
  GgmlType type;
  int64_t rows, cols;
};

std::string shape_name(const ::testing::TestParamInfo<Shape>& info) {
  return std::string(quant::type_name(info.param.type)) + "_" + std::to_string(info.param.rows) +
         "x" + std::to_string(info.param.cols);
}

class CudaGemv : public ::testing::TestWithParam<Shape> {};

// 1..8 tokens (one block row), 13 (two), each against the exact product, and every token's
// bits equal to those it gets alone.
TEST_P(CudaGemv, CloseToExactAndBatchInvariant) {
  REQUIRE_GPU();
  const auto [type, rows, cols] = GetParam();
  const Matrix m(type, rows, cols, 5);
  const DeviceMatrix dm = m.gpu();
  ASSERT_TRUE(gemv_supports(dm, reinterpret_cast<const float*>(256), cols));
  const int64_t max_tokens = 13;
  const std::vector<float> x = gaussian(static_cast<size_t>(max_tokens * cols), 77);
  std::vector<std::vector<float>> alone;
  for (int64_t t = 0; t < max_tokens; ++t) {
    const std::vector<float> xt(x.begin() + t * cols, x.begin() + (t + 1) * cols);
    alone.push_back(run_gemv(dm, xt, 1));
  }
  for (int64_t n : {1, 2, 3, 4, 5, 6, 7, 8, 13}) {
    const std::string what =
        std::string(quant::type_name(type)) + ", " + std::to_string(n) + " tokens";
    const std::vector<float> y = run_gemv(dm, x, n);
    expect_close(y, rows, m, x, cols, n, what);
    for (int64_t t = 0; t < n; ++t) {
      EXPECT_TRUE(same_bits(y.data() + t * rows, alone[t].data(), rows))
          << what << ": token " << t << " differs from its result alone";
    }
  }
}

// Rows not a multiple of any tiling (70, 37); lengths with a partial last chunk (Q8_0 160,
// K-quants and IQ2_XXS 2304, F16 200, F32 104); rows that are not 16-byte aligned (Q8_0 with 64
// columns: 68-byte rows, the tiny model's q_b); the Flash inner dimensions 1024 and 4096.
INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaGemv,
    ::testing::Values(Shape{GgmlType::kQ8_0, 70, 4096}, Shape{GgmlType::kQ8_0, 37, 1024},
                      Shape{GgmlType::kQ8_0, 70, 160}, Shape{GgmlType::kQ8_0, 45, 64},
                      Shape{GgmlType::kIQ2_XXS, 70, 4096}, Shape{GgmlType::kIQ2_XXS, 37, 2304},
                      Shape{GgmlType::kIQ2_XXS, 21, 256}, Shape{GgmlType::kQ2_K, 70, 2048},
                      Shape{GgmlType::kQ2_K, 37, 2304}, Shape{GgmlType::kQ4_K, 70, 4096},
                      Shape{GgmlType::kQ4_K, 37, 2304}, Shape{GgmlType::kQ4_K, 9, 256},
                      Shape{GgmlType::kF16, 70, 4096}, Shape{GgmlType::kF16, 37, 200},
                      Shape{GgmlType::kBF16, 37, 512}, Shape{GgmlType::kF32, 70, 1024},
                      Shape{GgmlType::kF32, 37, 104}),
    shape_name);

// Strided activations and outputs (the grouped output projection): rows 20..39 on the second half
// of each x row, into the second half of each y row, nothing written elsewhere.
TEST(CudaGemvStrides, RowSliceWithStrides) {
  REQUIRE_GPU();
  const int64_t cols = 256, tokens = 5;
  const Matrix m(GgmlType::kQ8_0, 40, cols, 9);
  const std::vector<float> x = gaussian(static_cast<size_t>(tokens * 2 * cols), 4);
  DeviceArray<float> dx{std::span<const float>(x)};
  DeviceArray<float> dy(static_cast<size_t>(tokens * 40));
  MAGNETAR_CUDA_CHECK(cudaMemset(dy.data(), 0, dy.bytes()));
  gemv_cuda(m.gpu().row_slice(20, 20), dx.data() + cols, 2 * cols, tokens, dy.data() + 20, 40,
            nullptr);
  MAGNETAR_CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<float> y = dy.download();
  std::vector<float> got(static_cast<size_t>(tokens * 20)), u(static_cast<size_t>(tokens * cols));
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t r = 0; r < 20; ++r) {
      got[t * 20 + r] = y[t * 40 + 20 + r];
      EXPECT_EQ(y[t * 40 + r], 0.0f) << "wrote outside its rows";
    }
    std::copy(x.begin() + t * 2 * cols + cols, x.begin() + (t + 1) * 2 * cols,
              u.begin() + t * cols);
  }
  expect_close(got, 20, m.values.data() + 20 * cols, 20, cols, u, cols, tokens, "row slice");
}

// Each (token, slot) pair through its expert, experts repeated and distinct: close to the exact
// product and bit-identical to the dense product with the pair's expert.
TEST(CudaGemvExperts, PairsCloseAndEqualToDense) {
  REQUIRE_GPU();
  const int64_t experts = 5, rows = 48, tokens = 4, used = 3;
  for (auto [type, cols] :
       {std::pair{GgmlType::kIQ2_XXS, int64_t{512}}, std::pair{GgmlType::kQ2_K, int64_t{2048}},
        std::pair{GgmlType::kQ4_K, int64_t{256}}, std::pair{GgmlType::kQ8_0, int64_t{1024}},
        std::pair{GgmlType::kF32, int64_t{64}}}) {
    SCOPED_TRACE(std::string(quant::type_name(type)));
    const Matrix all(type, rows * experts, cols, 21);
    std::vector<const uint8_t*> table;
    for (int64_t e = 0; e < experts; ++e)
      table.push_back(all.device.data() + e * rows * all.row_bytes);
    DeviceArray<const uint8_t*> dtable{std::span<const uint8_t* const>(table)};
    DeviceMatrix shape = all.gpu();
    shape.rows = rows;
    shape.data = nullptr;
    const DeviceExperts dexp{shape, experts, dtable.data()};
    const std::vector<int32_t> ids = {4, 0, 2, 1, 1, 3, 0, 4, 2, 3, 3, 3};
    DeviceArray<int32_t> dids{std::span<const int32_t>(ids)};
    const std::vector<float> x = gaussian(static_cast<size_t>(tokens * cols), 8);
    DeviceArray<float> dx{std::span<const float>(x)};
    DeviceArray<float> dy(static_cast<size_t>(tokens * used * rows));
    gemv_experts_cuda(dexp, dids.data(), tokens * used, dx.data(), used, dy.data(), nullptr);
    MAGNETAR_CUDA_CHECK(cudaDeviceSynchronize());
    const std::vector<float> y = dy.download();
    for (int64_t p = 0; p < tokens * used; ++p) {
      const std::vector<float> xp(x.begin() + (p / used) * cols, x.begin() + (p / used + 1) * cols);
      const std::vector<float> yp(y.begin() + p * rows, y.begin() + (p + 1) * rows);
      expect_close(yp, rows, all.values.data() + ids[p] * rows * cols, rows, cols, xp, cols, 1,
                   "pair " + std::to_string(p));
      DeviceMatrix dense = all.gpu().row_slice(ids[p] * rows, rows);
      EXPECT_TRUE(same_bits(yp.data(), run_gemv(dense, xp, 1).data(), rows))
          << "pair " << p << " differs from the dense product";
    }
  }
}

// The grouped product (the attention output projection's layout): group g of token t is the
// dense product of rows [g·r, (g+1)·r) with x[t][g·cols, (g+1)·cols), bit for bit, and close to
// the exact one; a row count that groups do not divide is refused.
TEST(CudaGemvGrouped, EachGroupIsItsDenseProduct) {
  REQUIRE_GPU();
  const int64_t groups = 8, rows = 24;
  for (auto [type, cols] :
       {std::pair{GgmlType::kQ8_0, int64_t{1024}}, std::pair{GgmlType::kF16, int64_t{512}}}) {
    SCOPED_TRACE(std::string(quant::type_name(type)));
    const Matrix all(type, rows * groups, cols, 31);
    for (const int64_t tokens : {int64_t{1}, int64_t{3}, int64_t{8}}) {
      const std::vector<float> x = gaussian(static_cast<size_t>(tokens * groups * cols), 9);
      DeviceArray<float> dx{std::span<const float>(x)};
      DeviceArray<float> dy(static_cast<size_t>(tokens * groups * rows));
      gemv_grouped_cuda(all.gpu(), groups, dx.data(), tokens, dy.data(), nullptr);
      MAGNETAR_CUDA_CHECK(cudaDeviceSynchronize());
      const std::vector<float> y = dy.download();
      for (int64_t t = 0; t < tokens; ++t) {
        for (int64_t g = 0; g < groups; ++g) {
          const int64_t at = (t * groups + g);
          const std::vector<float> xg(x.begin() + at * cols, x.begin() + (at + 1) * cols);
          const std::vector<float> yg(y.begin() + at * rows, y.begin() + (at + 1) * rows);
          expect_close(yg, rows, all.values.data() + g * rows * cols, rows, cols, xg, cols, 1,
                       "token " + std::to_string(t) + " group " + std::to_string(g));
          EXPECT_TRUE(same_bits(yg.data(),
                                run_gemv(all.gpu().row_slice(g * rows, rows), xg, 1).data(), rows))
              << "token " << t << " group " << g << " differs from its dense product";
        }
      }
    }
  }
  const Matrix odd(GgmlType::kQ8_0, 20, 256, 3);
  DeviceArray<float> dx(static_cast<size_t>(8 * 256)), dy(static_cast<size_t>(20));
  EXPECT_THROW(gemv_grouped_cuda(odd.gpu(), 8, dx.data(), 1, dy.data(), nullptr),
               std::invalid_argument);
}

// A corrupt expert id gives NaN outputs for its pair, valid ids are unaffected.
TEST(CudaGemvExperts, BadIdGivesNaN) {
  REQUIRE_GPU();
  const int64_t rows = 16, cols = 256;
  const Matrix all(GgmlType::kQ8_0, rows, cols, 3);
  const std::vector<const uint8_t*> table = {all.device.data()};
  DeviceArray<const uint8_t*> dtable{std::span<const uint8_t* const>(table)};
  DeviceMatrix shape = all.gpu();
  const DeviceExperts dexp{shape, 1, dtable.data()};
  const std::vector<int32_t> ids = {0, 7, -1};
  DeviceArray<int32_t> dids{std::span<const int32_t>(ids)};
  const std::vector<float> x = gaussian(static_cast<size_t>(cols), 2);
  DeviceArray<float> dx{std::span<const float>(x)};
  DeviceArray<float> dy(static_cast<size_t>(3 * rows));
  gemv_experts_cuda(dexp, dids.data(), 3, dx.data(), 3, dy.data(), nullptr);
  MAGNETAR_CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<float> y = dy.download();
  for (int64_t r = 0; r < rows; ++r) {
    EXPECT_TRUE(std::isfinite(y[r]));
    EXPECT_TRUE(std::isnan(y[rows + r]));
    EXPECT_TRUE(std::isnan(y[2 * rows + r]));
  }
}

// The dispatch of linear_cuda: the GEMV's bits by default, and the reference kernel (which this
// checks against the GEMV's bound too) in the CPU's order or for operands the GEMV cannot take.
TEST(CudaGemvDispatch, LinearCudaUsesTheGemv) {
  REQUIRE_GPU();
  const Matrix m(GgmlType::kQ4_K, 33, 512, 11);
  const std::vector<float> x = gaussian(static_cast<size_t>(3 * 512), 12);
  DeviceArray<float> dx{std::span<const float>(x)};
  DeviceArray<float> dy(static_cast<size_t>(3 * 33));
  linear_cuda(m.gpu(), dx.data(), 3, dy.data(), nullptr);
  MAGNETAR_CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<float> fast = dy.download();
  EXPECT_TRUE(same_bits(fast.data(), run_gemv(m.gpu(), x, 3).data(), fast.size()));

  ASSERT_FALSE(reference_order());
  set_reference_order(true);
  linear_cuda(m.gpu(), dx.data(), 3, dy.data(), nullptr);
  set_reference_order(false);
  MAGNETAR_CUDA_CHECK(cudaDeviceSynchronize());
  expect_close(dy.download(), 33, m, x, 512, 3, "reference order");

  // 100 columns: not a multiple of 8, so the reference kernel serves it.
  const Matrix odd(GgmlType::kF32, 10, 100, 13);
  EXPECT_FALSE(gemv_supports(odd.gpu(), dx.data(), 100));
  EXPECT_THROW(gemv_cuda(odd.gpu(), dx.data(), 100, 1, dy.data(), 10, nullptr),
               std::invalid_argument);
  linear_cuda(odd.gpu(), dx.data(), 1, dy.data(), nullptr);
  MAGNETAR_CUDA_CHECK(cudaDeviceSynchronize());
  expect_close(dy.download(), 10, odd, x, 100, 1, "100 columns");
}

TEST(CudaGemvArguments, Refusals) {
  DeviceMatrix m;
  m.type = GgmlType::kQ8_0;
  m.cols = 64;
  m.rows = 2;
  const float* aligned = reinterpret_cast<const float*>(1024);
  EXPECT_TRUE(gemv_supports(m, aligned, 64));
  EXPECT_FALSE(gemv_supports(m, aligned + 1, 64)) << "x not 16-byte aligned";
  EXPECT_FALSE(gemv_supports(m, aligned, 66)) << "x_stride not a multiple of 4";
  m.cols = 48;
  EXPECT_FALSE(gemv_supports(m, aligned, 48)) << "not whole Q8_0 blocks";
  m.type = GgmlType::kQ8_K;
  m.cols = 256;
  EXPECT_FALSE(gemv_supports(m, aligned, 256)) << "no GEMV format";
  EXPECT_THROW(gemv_cuda(m, aligned, 256, 1, nullptr, 2, nullptr), std::invalid_argument);
}

}  // namespace
}  // namespace magnetar::gpu
