// The GPU weight decoders against the CPU reference decoders (src/quant/dequantize.cc): for every
// format the decoded floats must have the same bits. Needs a CUDA GPU (see CMakeLists.txt); only
// the argument checks run without one.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iomanip>
#include <iostream>
#include <ostream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_device.h"
#include "backend/cuda/dequantize.cuh"
#include "quant/blocks.h"
#include "quant/ggml_type.h"
#include "quant/quant.h"

namespace magnetar::quant {

// Lets GoogleTest print a failing test's parameter as "q8_0" rather than as raw bytes.
void PrintTo(GgmlType type, std::ostream* out) { *out << type_name(type); }

}  // namespace magnetar::quant

namespace magnetar::gpu {
namespace {

using quant::GgmlType;

constexpr GgmlType kTypes[] = {GgmlType::kF32,  GgmlType::kF16,  GgmlType::kBF16,   GgmlType::kQ8_0,
                               GgmlType::kQ2_K, GgmlType::kQ4_K, GgmlType::kIQ2_XXS};

class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) { MAGNETAR_CUDA_CHECK(cudaMalloc(&ptr_, bytes)); }
  ~DeviceBuffer() { cudaFree(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  uint8_t* bytes() const { return static_cast<uint8_t*>(ptr_); }
  float* floats() const { return static_cast<float*>(ptr_); }

 private:
  void* ptr_ = nullptr;
};

// A non-default stream, so that the decoder is seen to honour its stream argument.
class Stream {
 public:
  Stream() { MAGNETAR_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)); }
  ~Stream() { cudaStreamDestroy(stream_); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

int64_t block_elems(GgmlType type) { return quant::type_info(type).block_elems; }

std::string hex_bits(float v) {
  std::ostringstream out;
  out << "0x" << std::hex << std::setw(8) << std::setfill('0') << std::bit_cast<uint32_t>(v);
  return out.str();
}

// Decodes `rows` rows of n values of `type`, stored back to back in `encoded`, row by row on the
// CPU and on the GPU (each row from its own offset in one device buffer, as the rows of a tensor
// are decoded), and expects the same bits. Reports the first mismatching element.
void expect_gpu_matches_cpu(GgmlType type, const std::vector<uint8_t>& encoded, int64_t rows,
                            int64_t n) {
  const int64_t row_bytes = quant::row_bytes(type, n);
  ASSERT_EQ(encoded.size(), static_cast<size_t>(rows * row_bytes));
  const size_t total = static_cast<size_t>(rows * n);
  std::vector<float> cpu(total);
  for (int64_t r = 0; r < rows; ++r) {
    quant::dequantize_row(type, encoded.data() + r * row_bytes, cpu.data() + r * n, n);
  }

  Stream stream;
  DeviceBuffer src(encoded.size());
  DeviceBuffer dst(total * sizeof(float));
  // All-ones bytes are a NaN that no decoder produces here, so values the GPU leaves unwritten
  // show up as mismatches.
  MAGNETAR_CUDA_CHECK(cudaMemsetAsync(dst.bytes(), 0xff, total * sizeof(float), stream.get()));
  MAGNETAR_CUDA_CHECK(cudaMemcpyAsync(src.bytes(), encoded.data(), encoded.size(),
                                      cudaMemcpyHostToDevice, stream.get()));
  for (int64_t r = 0; r < rows; ++r) {
    dequantize_rows_cuda(type, src.bytes() + r * row_bytes, dst.floats() + r * n, n, stream.get());
  }
  std::vector<float> gpu(total);
  MAGNETAR_CUDA_CHECK(cudaMemcpyAsync(gpu.data(), dst.bytes(), total * sizeof(float),
                                      cudaMemcpyDeviceToHost, stream.get()));
  MAGNETAR_CUDA_CHECK(cudaStreamSynchronize(stream.get()));

  if (std::memcmp(cpu.data(), gpu.data(), total * sizeof(float)) == 0) return;
  size_t first = 0;
  size_t count = 0;
  for (size_t i = 0; i < total; ++i) {
    if (std::bit_cast<uint32_t>(cpu[i]) == std::bit_cast<uint32_t>(gpu[i])) continue;
    if (count++ == 0) first = i;
  }
  ADD_FAILURE() << quant::type_name(type) << ", " << rows << " x " << n << " values: " << count
                << " differ; the first is element " << first << " (row " << first / n << ", block "
                << (first % n) / block_elems(type) << ", element "
                << (first % n) % block_elems(type) << " of it): CPU " << std::setprecision(9)
                << cpu[first] << " (" << hex_bits(cpu[first]) << "), GPU " << gpu[first] << " ("
                << hex_bits(gpu[first]) << ")";
}

std::vector<uint8_t> quantize_gaussian(GgmlType type, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = dist(rng);
  std::vector<uint8_t> encoded(static_cast<size_t>(quant::row_bytes(type, n)));
  quant::quantize_row(type, x.data(), encoded.data(), n);
  return encoded;
}

// Byte offsets of the f16 scales within a block of `type`.
std::vector<size_t> scale_offsets(GgmlType type) {
  switch (type) {
    case GgmlType::kQ8_0:
      return {offsetof(quant::BlockQ8_0, d)};
    case GgmlType::kQ2_K:
      return {offsetof(quant::BlockQ2_K, d), offsetof(quant::BlockQ2_K, dmin)};
    case GgmlType::kQ4_K:
      return {offsetof(quant::BlockQ4_K, d), offsetof(quant::BlockQ4_K, dmin)};
    case GgmlType::kIQ2_XXS:
      return {offsetof(quant::BlockIQ2_XXS, d)};
    default:
      return {};
  }
}

// Uniformly random blocks: every code, scale nibble, grid and sign index occurs, unlike in
// quantized Gaussians. The f16 scales are made finite: a product with an inf or NaN scale gives
// NaNs whose payloads differ between CPU and GPU arithmetic, which says nothing about the decoder.
// F32/F16/BF16 keep every bit pattern, NaNs included, since decoding them only moves bits.
std::vector<uint8_t> random_blocks(GgmlType type, int64_t blocks, uint64_t seed) {
  const int64_t block_bytes = quant::type_info(type).block_bytes;
  std::vector<uint8_t> encoded(static_cast<size_t>(blocks * block_bytes));
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i < encoded.size(); i += 8) {
    const uint64_t word = rng();
    std::memcpy(encoded.data() + i, &word, std::min<size_t>(8, encoded.size() - i));
  }
  for (size_t offset : scale_offsets(type)) {
    for (int64_t b = 0; b < blocks; ++b) {
      uint8_t* field = encoded.data() + b * block_bytes + offset;
      uint16_t h;
      std::memcpy(&h, field, 2);
      if ((h & 0x7c00) == 0x7c00) h &= 0xbfff;  // all-ones exponent: clear its top bit
      std::memcpy(field, &h, 2);
    }
  }
  return encoded;
}

class CudaDequantize : public ::testing::TestWithParam<GgmlType> {};

TEST_P(CudaDequantize, QuantizedGaussianRows) {
  const GgmlType type = GetParam();
  for (int64_t blocks : {1, 7, 1000}) {
    SCOPED_TRACE(::testing::Message() << blocks << " blocks");
    const int64_t n = blocks * block_elems(type);
    expect_gpu_matches_cpu(type, quantize_gaussian(type, n, static_cast<uint32_t>(blocks)), 1, n);
  }
}

// Rows of a tensor start wherever the previous one ends: with 34- or 66-byte blocks (Q8_0,
// IQ2_XXS) or 7-element F16 rows, most rows are only 2-byte aligned.
TEST_P(CudaDequantize, RowsInsideOneBuffer) {
  const GgmlType type = GetParam();
  const int64_t rows = 5;
  const int64_t n = 7 * block_elems(type);
  expect_gpu_matches_cpu(type, quantize_gaussian(type, rows * n, 42), rows, n);
}

// At least 64 MiB of encoded data: hundreds of millions of values, far more than one grid's
// threads, so the kernels' grid-stride loops and 64-bit indexing are exercised.
TEST_P(CudaDequantize, RandomBlocksOver64MiB) {
  const GgmlType type = GetParam();
  const int64_t block_bytes = quant::type_info(type).block_bytes;
  const int64_t blocks = ((int64_t{64} << 20) + block_bytes - 1) / block_bytes;
  expect_gpu_matches_cpu(type, random_blocks(type, blocks, 7), 1, blocks * block_elems(type));
}

INSTANTIATE_TEST_SUITE_P(AllTypes, CudaDequantize, ::testing::ValuesIn(kTypes),
                         [](const ::testing::TestParamInfo<GgmlType>& info) {
                           return std::string(quant::type_name(info.param));
                         });

// The argument checks come before any CUDA call, so these pointers are never dereferenced.
TEST(CudaDequantizeArguments, RejectsOtherTypes) {
  for (GgmlType type : {GgmlType::kQ8_K, GgmlType::kQ4_0, GgmlType::kQ6_K, GgmlType::kI32}) {
    EXPECT_THROW(dequantize_rows_cuda(type, nullptr, nullptr, 256, nullptr), std::invalid_argument)
        << quant::type_name(type);
  }
}

TEST(CudaDequantizeArguments, RejectsPartialBlocks) {
  EXPECT_THROW(dequantize_rows_cuda(GgmlType::kQ8_0, nullptr, nullptr, 33, nullptr),
               std::invalid_argument);
  EXPECT_THROW(dequantize_rows_cuda(GgmlType::kQ2_K, nullptr, nullptr, 255, nullptr),
               std::invalid_argument);
  EXPECT_THROW(dequantize_rows_cuda(GgmlType::kQ4_K, nullptr, nullptr, 128, nullptr),
               std::invalid_argument);
  EXPECT_THROW(dequantize_rows_cuda(GgmlType::kIQ2_XXS, nullptr, nullptr, -256, nullptr),
               std::invalid_argument);
}

TEST(CudaDequantizeArguments, RejectsMisalignedPointers) {
  const auto* odd_src = reinterpret_cast<const void*>(uintptr_t{0x1001});
  auto* odd_dst = reinterpret_cast<float*>(uintptr_t{0x1002});
  auto* dst = reinterpret_cast<float*>(uintptr_t{0x1000});
  EXPECT_THROW(dequantize_rows_cuda(GgmlType::kQ8_0, odd_src, dst, 32, nullptr),
               std::invalid_argument);
  EXPECT_THROW(dequantize_rows_cuda(GgmlType::kF16, dst, odd_dst, 32, nullptr),
               std::invalid_argument);
}

TEST(CudaDevices, ListsAHopperGpu) {
  const std::vector<CudaDeviceInfo> devices = cuda_devices();
  ASSERT_FALSE(devices.empty()) << "no CUDA device: run this binary on a GPU machine";
  bool hopper = false;
  for (size_t i = 0; i < devices.size(); ++i) {
    const CudaDeviceInfo& d = devices[i];
    std::cout << "device " << d.index << ": " << d.name << ", sm_" << d.sm_major << d.sm_minor
              << ", " << d.total_memory / (1 << 20) << " MiB, " << d.multiprocessors
              << " multiprocessors\n";
    EXPECT_EQ(d.index, static_cast<int>(i));
    EXPECT_FALSE(d.name.empty());
    EXPECT_GT(d.total_memory, size_t{0});
    EXPECT_GT(d.multiprocessors, 0);
    hopper = hopper || d.sm_major == 9;
  }
  EXPECT_TRUE(hopper) << "this binary holds sm_90a code only";
}

}  // namespace
}  // namespace magnetar::gpu
