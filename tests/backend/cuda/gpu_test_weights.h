// Random weights on both sides for the GPU tests of the tensor-core path: quantized with the CPU
// encoders from Gaussian values, uploaded, and decoded back on the host for reference products.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "backend/cuda/device_array.h"
#include "backend/cuda/device_weights.h"
#include "model/model_weights.h"
#include "quant/quant.h"

namespace magnetar::gpu::testing {

inline std::vector<float> gaussian(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// `experts` matrices of rows × cols of one type, back to back (one matrix when experts == 1).
struct TestWeights {
  std::vector<uint8_t> bytes;
  DeviceArray<uint8_t> device;
  model::WeightMatrix host;
  DeviceMatrix gpu;  // the first (or only) matrix

  TestWeights(quant::GgmlType type, int64_t rows, int64_t cols, int64_t experts, uint32_t seed,
              float scale = 0.05f) {
    const int64_t row_bytes = quant::row_bytes(type, cols);
    bytes.resize(static_cast<size_t>(rows * experts * row_bytes));
    for (int64_t e = 0; e < experts; ++e) {
      const std::vector<float> w =
          gaussian(static_cast<size_t>(rows * cols), seed + static_cast<uint32_t>(e), scale);
      quant::quantize_matrix(type, w.data(), bytes.data() + e * rows * row_bytes, rows, cols);
    }
    device = DeviceArray<uint8_t>(std::span<const uint8_t>(bytes));
    host = {"test", type, bytes.data(), cols, rows, experts, row_bytes};
    gpu.name = "test";
    gpu.type = type;
    gpu.data = device.data();
    gpu.cols = cols;
    gpu.rows = rows;
    gpu.row_bytes = row_bytes;
  }

  // Matrix e decoded by the CPU reference decoder: rows × cols floats.
  std::vector<float> decoded(int64_t e = 0) const {
    std::vector<float> w(static_cast<size_t>(host.rows * host.cols));
    for (int64_t r = 0; r < host.rows; ++r) {
      quant::dequantize_row(host.type, host.row(e * host.rows + r), w.data() + r * host.cols,
                            host.cols);
    }
    return w;
  }
};

// TestWeights as a routed-expert projection: a device table of one pointer per expert.
struct TestExperts {
  TestWeights weights;
  DeviceArray<const uint8_t*> table;
  DeviceExperts gpu;

  TestExperts(quant::GgmlType type, int64_t rows, int64_t cols, int64_t experts, uint32_t seed)
      : weights(type, rows, cols, experts, seed) {
    std::vector<const uint8_t*> pointers;
    for (int64_t e = 0; e < experts; ++e) {
      pointers.push_back(weights.gpu.data + e * rows * weights.gpu.row_bytes);
    }
    table = DeviceArray<const uint8_t*>(std::span<const uint8_t* const>(pointers));
    gpu = {weights.gpu, experts, table.data()};
  }
};

}  // namespace magnetar::gpu::testing
