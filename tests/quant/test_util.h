// Shared helpers for the quant tests: reproducible data and error measures.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "quant/quant.h"

namespace magnetar::quant::testing {

inline std::vector<float> gaussian(int64_t n, uint32_t seed, float sigma = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = dist(rng);
  return x;
}

// Quantizes with quantize_matrix and decodes again.
inline std::vector<float> round_trip(GgmlType type, const std::vector<float>& x, int64_t nrows,
                                     int64_t ncols, const float* importance = nullptr) {
  std::vector<uint8_t> q(static_cast<size_t>(nrows * row_bytes(type, ncols)));
  quantize_matrix(type, x.data(), q.data(), nrows, ncols, importance);
  std::vector<float> y(x.size());
  for (int64_t r = 0; r < nrows; ++r) {
    dequantize_row(type, q.data() + r * row_bytes(type, ncols), y.data() + r * ncols, ncols);
  }
  return y;
}

// sqrt(sum (x - y)^2 / sum x^2).
inline double relative_rmse(const std::vector<float>& x, const std::vector<float>& y) {
  double err = 0;
  double ref = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    err += (static_cast<double>(x[i]) - y[i]) * (static_cast<double>(x[i]) - y[i]);
    ref += static_cast<double>(x[i]) * x[i];
  }
  return std::sqrt(err / ref);
}

}  // namespace magnetar::quant::testing
