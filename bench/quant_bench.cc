// Single-threaded throughput of the quantized-format code in src/quant:
//   * encoders: MB of f32 input consumed per second (Gaussian rows of 4096 values);
//   * dot products: GB of weight bytes consumed per second, for each instruction set, over a
//     cache-resident weight set (1 MiB) and a memory-streaming one (64 MiB).
// Usage: magnetar_quant_bench [seconds per measurement, default 0.5]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "quant/blocks.h"
#include "quant/fp16.h"
#include "quant/quant.h"

namespace q = magnetar::quant;

namespace {

constexpr int64_t kCols = 4096;

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Runs `step` (which processes `bytes` bytes) until `budget` seconds have passed; returns bytes/s.
template <typename Step>
double rate(double budget, double bytes, Step step) {
  step();  // warm-up: lazy tables, page faults
  int64_t reps = 0;
  const auto start = std::chrono::steady_clock::now();
  do {
    step();
    ++reps;
  } while (seconds_since(start) < budget);
  return bytes * static_cast<double>(reps) / seconds_since(start);
}

void bench_encoders(double budget) {
  std::mt19937 rng(1);
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  constexpr int64_t kRows = 16;
  std::vector<float> src(kRows * kCols);
  for (float& v : src) v = gauss(rng);
  std::vector<float> importance(kCols);
  for (float& v : importance) v = 0.5f + std::abs(gauss(rng));
  std::printf("encode (single thread, MB of f32 input per second)\n");
  struct Case {
    q::GgmlType type;
    const float* importance;
    const char* label;
  };
  const Case cases[] = {
      {q::GgmlType::kQ8_0, nullptr, "q8_0"},
      {q::GgmlType::kQ2_K, nullptr, "q2_K (reference)"},
      {q::GgmlType::kQ2_K, importance.data(), "q2_K (importance)"},
      {q::GgmlType::kQ4_K, nullptr, "q4_K (reference)"},
      {q::GgmlType::kQ4_K, importance.data(), "q4_K (importance)"},
      {q::GgmlType::kIQ2_XXS, importance.data(), "iq2_xxs"},
      {q::GgmlType::kQ8_K, nullptr, "q8_K (activations)"},
  };
  for (const Case& c : cases) {
    std::vector<uint8_t> dst(q::row_bytes(c.type, kCols) * kRows);
    const double r = rate(budget, static_cast<double>(src.size() * sizeof(float)), [&] {
      q::quantize_matrix(c.type, src.data(), dst.data(), kRows, kCols, c.importance);
    });
    std::printf("  %-20s %9.1f MB/s\n", c.label, r / 1e6);
  }
}

// A weight buffer of about `bytes` bytes of rows of kCols values. The codes are random bytes
// (every bit pattern is valid); the f16 scales are set to ordinary values so no inf/NaN enters.
std::vector<uint8_t> random_weights(q::GgmlType type, int64_t bytes, int64_t* rows,
                                    std::mt19937& rng) {
  const int64_t row_size = q::row_bytes(type, kCols);
  *rows = std::max<int64_t>(1, bytes / row_size);
  std::vector<uint8_t> w(static_cast<size_t>(*rows * row_size));
  for (uint8_t& b : w) b = static_cast<uint8_t>(rng());
  const uint16_t scale = q::f32_to_f16(0.01f);
  const int64_t blocks = static_cast<int64_t>(w.size()) / q::type_info(type).block_bytes;
  switch (type) {
    case q::GgmlType::kF32:
      for (size_t i = 0; i < w.size() / 4; ++i) reinterpret_cast<float*>(w.data())[i] = 0.01f;
      break;
    case q::GgmlType::kF16:
    case q::GgmlType::kBF16:
      for (size_t i = 0; i < w.size() / 2; ++i) {
        reinterpret_cast<uint16_t*>(w.data())[i] =
            type == q::GgmlType::kF16 ? scale : q::f32_to_bf16(0.01f);
      }
      break;
    case q::GgmlType::kQ8_0:
      for (int64_t b = 0; b < blocks; ++b) reinterpret_cast<q::BlockQ8_0*>(w.data())[b].d = scale;
      break;
    case q::GgmlType::kQ2_K:
      for (int64_t b = 0; b < blocks; ++b) {
        reinterpret_cast<q::BlockQ2_K*>(w.data())[b].d = scale;
        reinterpret_cast<q::BlockQ2_K*>(w.data())[b].dmin = scale;
      }
      break;
    case q::GgmlType::kQ4_K:
      for (int64_t b = 0; b < blocks; ++b) {
        reinterpret_cast<q::BlockQ4_K*>(w.data())[b].d = scale;
        reinterpret_cast<q::BlockQ4_K*>(w.data())[b].dmin = scale;
      }
      break;
    case q::GgmlType::kIQ2_XXS:
      for (int64_t b = 0; b < blocks; ++b)
        reinterpret_cast<q::BlockIQ2_XXS*>(w.data())[b].d = scale;
      break;
    default:
      break;
  }
  return w;
}

void bench_dots(double budget) {
  std::mt19937 rng(2);
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  std::vector<float> x(kCols);
  for (float& v : x) v = gauss(rng);
  std::printf("dot products (single thread, GB of weight bytes per second; rows of %lld)\n",
              static_cast<long long>(kCols));
  std::printf("  %-8s %12s %12s %12s %12s\n", "weight", "avx2 1MiB", "portable 1MiB", "avx2 64MiB",
              "portable 64MiB");
  const q::GgmlType types[] = {q::GgmlType::kF32,    q::GgmlType::kF16,  q::GgmlType::kBF16,
                               q::GgmlType::kQ8_0,   q::GgmlType::kQ2_K, q::GgmlType::kQ4_K,
                               q::GgmlType::kIQ2_XXS};
  const bool have_avx2 = q::cpu_isa_supported(q::CpuIsa::kAvx2);
  for (q::GgmlType type : types) {
    std::vector<uint8_t> act(q::activation_row_bytes(type, kCols));
    q::quantize_activation_row(type, x.data(), act.data(), kCols);
    std::printf("  %-8s", std::string(q::type_name(type)).c_str());
    for (int64_t size : {int64_t{1} << 20, int64_t{64} << 20}) {
      int64_t rows = 0;
      const std::vector<uint8_t> w = random_weights(type, size, &rows, rng);
      const int64_t row_size = q::row_bytes(type, kCols);
      for (q::CpuIsa isa : {q::CpuIsa::kAvx2, q::CpuIsa::kPortable}) {
        if (isa == q::CpuIsa::kAvx2 && !have_avx2) {
          std::printf(" %12s", "n/a");
          continue;
        }
        volatile float sink = 0;
        const double r = rate(budget, static_cast<double>(w.size()), [&] {
          float s = 0;
          for (int64_t row = 0; row < rows; ++row) {
            s += q::vec_dot_isa(isa, type, kCols, w.data() + row * row_size, act.data());
          }
          sink = sink + s;
        });
        std::printf(" %12.2f", r / 1e9);
      }
    }
    std::printf("\n");
  }
}

}  // namespace

int main(int argc, char** argv) {
  const double budget = argc > 1 ? std::atof(argv[1]) : 0.5;
  std::printf("active ISA: %s\n", std::string(q::cpu_isa()).c_str());
  bench_encoders(budget);
  bench_dots(budget);
  return 0;
}
