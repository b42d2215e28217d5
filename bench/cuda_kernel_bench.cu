// Decode matrix-product kernels on the GPU: time per launch and weight bandwidth of the fast GEMV
// (gemv.cuh) and of the CPU-order reference kernel (linear.cuh, set_reference_order) on the
// DeepSeek V4 Flash decode matrices (shared/spec/cuda-design.md §7.1 M2).
//
// Usage: magnetar_cuda_kernel_bench [substring]   (only the cases whose name contains it)
//
// Method: weights are random valid blocks (random codes, finite f16 scales) generated in device
// memory. Each dense case rotates over enough copies of its matrix to span ≥ 4 × the L2 cache, so
// that every launch streams from memory; expert cases draw their ids from 256 experts. Each case
// is timed with CUDA events over batches of launches (≈ 25 ms each, after a warm-up batch); the
// table shows the median batch. GB/s counts the weight bytes a launch needs once (for experts, the
// distinct experts of the launch), so % of copy is the share of the device-to-device copy rate
// (read + write bytes per second, measured first) that the kernel reaches: decode's roofline.
// Every output of a case's last launch is checked to be finite. Any CUDA error ends the program
// with a message and status 1.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/device_array.h"
#include "backend/cuda/gemv.cuh"
#include "backend/cuda/linear.cuh"
#include "quant/ggml_type.h"

namespace magnetar::gpu {
namespace {

using quant::GgmlType;

constexpr int kExperts = 256;
constexpr int kUsed = 6;           // routed experts per token
constexpr double kBatchMs = 25.0;  // target time of one timed batch
constexpr int kBatches = 5;

__device__ uint32_t mix(uint64_t v) {
  v ^= v >> 33;
  v *= 0xff51afd7ed558ccdull;
  v ^= v >> 33;
  v *= 0xc4ceb9fe1a85ec53ull;
  v ^= v >> 33;
  return static_cast<uint32_t>(v);
}

// Uniform in [-1, 1).
__device__ float unit(uint64_t seed, uint64_t i) {
  return static_cast<float>(mix(seed * 0x9e3779b97f4a7c15ull + i) >> 8) * 0x1p-23f - 1.0f;
}

__global__ void random_bytes(uint8_t* p, int64_t n, uint64_t seed) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    p[i] = static_cast<uint8_t>(mix(seed * 0x9e3779b97f4a7c15ull + i));
  }
}

// Overwrites the f16 fields at `offsets` of every block with scales in [0.001, 0.01].
__global__ void set_scales(uint8_t* p, int64_t n_blocks, int block_bytes, int off0, int off1,
                           uint64_t seed) {
  for (int64_t b = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; b < n_blocks;
       b += int64_t{gridDim.x} * blockDim.x) {
    for (int off : {off0, off1}) {
      if (off < 0) continue;
      const __half h = __float2half(0.0055f + 0.0045f * unit(seed, 2 * b + (off == off1)));
      *reinterpret_cast<__half*>(p + b * block_bytes + off) = h;
    }
  }
}

__global__ void random_floats(float* p, int64_t n, uint64_t seed, float scale) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    p[i] = scale * unit(seed, i);
  }
}

__global__ void random_halves(__half* p, int64_t n, uint64_t seed) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    p[i] = __float2half(0.05f * unit(seed, i));
  }
}

// Fills `bytes` of weights of `type` (whole blocks) with random valid data.
void fill_weights(GgmlType type, uint8_t* p, int64_t bytes, uint64_t seed) {
  const dim3 grid(1024), block(256);
  switch (type) {
    case GgmlType::kF32:
      random_floats<<<grid, block>>>(reinterpret_cast<float*>(p), bytes / 4, seed, 0.05f);
      break;
    case GgmlType::kF16:
      random_halves<<<grid, block>>>(reinterpret_cast<__half*>(p), bytes / 2, seed);
      break;
    default: {
      random_bytes<<<grid, block>>>(p, bytes, seed);
      const int64_t block_bytes = quant::type_info(type).block_bytes;
      int off0 = 0, off1 = -1;  // Q8_0, IQ2_XXS: d at 0
      if (type == GgmlType::kQ2_K) off0 = 80, off1 = 82;
      if (type == GgmlType::kQ4_K) off1 = 2;
      set_scales<<<grid, block>>>(p, bytes / block_bytes, static_cast<int>(block_bytes), off0, off1,
                                  seed + 1);
    }
  }
  MAGNETAR_CUDA_CHECK(cudaGetLastError());
}

struct Timer {
  cudaEvent_t start, stop;
  Timer() {
    MAGNETAR_CUDA_CHECK(cudaEventCreate(&start));
    MAGNETAR_CUDA_CHECK(cudaEventCreate(&stop));
  }
  ~Timer() {
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
  }
  // Median over kBatches of the time per call of `launch(i)`, in µs, with the batch size chosen
  // from a warm-up batch.
  template <typename Launch>
  double median_us(Launch launch) {
    auto batch = [&](int n) {
      MAGNETAR_CUDA_CHECK(cudaEventRecord(start));
      for (int i = 0; i < n; ++i) launch(i);
      MAGNETAR_CUDA_CHECK(cudaEventRecord(stop));
      MAGNETAR_CUDA_CHECK(cudaEventSynchronize(stop));
      float ms = 0;
      MAGNETAR_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
      return 1000.0 * ms / n;
    };
    const double warm = batch(3);
    const int n = std::clamp(static_cast<int>(kBatchMs * 1000.0 / warm), 3, 5000);
    std::vector<double> times;
    for (int b = 0; b < kBatches; ++b) times.push_back(batch(n));
    std::sort(times.begin(), times.end());
    return times[kBatches / 2];
  }
};

// The device-to-device copy rate, read + write bytes per second, over 1 GiB.
double copy_rate(Timer& timer) {
  const size_t bytes = size_t{1} << 30;
  DeviceArray<uint8_t> a(bytes), b(bytes);
  MAGNETAR_CUDA_CHECK(cudaMemset(a.data(), 1, bytes));
  const double us = timer.median_us([&](int) {
    MAGNETAR_CUDA_CHECK(cudaMemcpyAsync(b.data(), a.data(), bytes, cudaMemcpyDeviceToDevice));
  });
  return 2.0 * bytes / (us * 1e-6);
}

struct Case {
  std::string name;
  GgmlType type;
  int64_t rows, cols;
  bool experts;
};

void check_finite(const DeviceArray<float>& y, size_t n, const std::string& what) {
  for (float v : y.download(n)) {
    if (!std::isfinite(v)) throw std::runtime_error(what + ": non-finite output");
  }
}

void print_row(const char* kernel, const Case& c, int64_t tokens, double us, double bytes,
               double copy) {
  const double gbs = bytes / (us * 1e-6) / 1e9;
  std::printf("%-9s %-14s %-8s %6lld x %-6lld %6lld %10.2f %9.1f %7.1f%%\n", kernel, c.name.c_str(),
              std::string(quant::type_name(c.type)).c_str(), static_cast<long long>(c.rows),
              static_cast<long long>(c.cols), static_cast<long long>(tokens), us, gbs,
              100.0 * gbs * 1e9 / copy);
  std::fflush(stdout);
}

void run_dense(const Case& c, Timer& timer, double copy, size_t l2) {
  const int64_t row_bytes = quant::row_bytes(c.type, c.cols);
  const int64_t bytes = c.rows * row_bytes;
  const int copies = static_cast<int>(std::max<int64_t>(1, (4 * int64_t(l2) + bytes - 1) / bytes));
  DeviceArray<uint8_t> w(static_cast<size_t>(bytes) * copies);
  fill_weights(c.type, w.data(), bytes * copies, 17);
  const int64_t max_tokens = 8;
  DeviceArray<float> x(static_cast<size_t>(max_tokens * c.cols));
  random_floats<<<256, 256>>>(x.data(), max_tokens * c.cols, 5, 1.0f);
  DeviceArray<float> y(static_cast<size_t>(max_tokens * c.rows));
  DeviceMatrix m;
  m.name = c.name.c_str();
  m.type = c.type;
  m.cols = c.cols;
  m.rows = c.rows;
  m.row_bytes = row_bytes;
  auto at = [&](int i) {
    DeviceMatrix mi = m;
    mi.data = w.data() + static_cast<size_t>(i % copies) * bytes;
    return mi;
  };
  for (int64_t tokens : {1, 2, 4, 8}) {
    const double us = timer.median_us(
        [&](int i) { gemv_cuda(at(i), x.data(), c.cols, tokens, y.data(), c.rows, nullptr); });
    check_finite(y, static_cast<size_t>(tokens * c.rows), c.name);
    print_row("gemv", c, tokens, us, double(bytes), copy);
  }
  set_reference_order(true);
  for (int64_t tokens : {1, 8}) {
    const double us =
        timer.median_us([&](int i) { linear_cuda(at(i), x.data(), tokens, y.data(), nullptr); });
    print_row("reference", c, tokens, us, double(bytes), copy);
  }
  set_reference_order(false);
}

// Expert cases: `tokens` tokens × 6 distinct experts each, ids drawn uniformly from 256; each
// launch uses the next of 16 id sets.
void run_experts(const Case& c, Timer& timer, double copy) {
  const int64_t row_bytes = quant::row_bytes(c.type, c.cols);
  const int64_t expert_bytes = c.rows * row_bytes;
  DeviceArray<uint8_t> w(static_cast<size_t>(expert_bytes) * kExperts);
  fill_weights(c.type, w.data(), expert_bytes * kExperts, 23);
  std::vector<const uint8_t*> table;
  for (int e = 0; e < kExperts; ++e) table.push_back(w.data() + e * expert_bytes);
  DeviceArray<const uint8_t*> dtable{std::span<const uint8_t* const>(table)};
  DeviceExperts experts;
  experts.shape.name = c.name.c_str();
  experts.shape.type = c.type;
  experts.shape.cols = c.cols;
  experts.shape.rows = c.rows;
  experts.shape.row_bytes = row_bytes;
  experts.count = kExperts;
  experts.table = dtable.data();
  std::mt19937 rng(3);
  for (int64_t tokens : {1, 16, 64}) {
    const int64_t pairs = tokens * kUsed;
    constexpr int kSets = 16;
    std::vector<int32_t> ids;
    double distinct = 0;
    for (int s = 0; s < kSets; ++s) {
      std::set<int32_t> in_set;
      for (int64_t t = 0; t < tokens; ++t) {
        std::set<int32_t> slots;
        while (slots.size() < kUsed) slots.insert(static_cast<int32_t>(rng() % kExperts));
        for (int32_t e : slots) ids.push_back(e);
        in_set.insert(slots.begin(), slots.end());
      }
      distinct += double(in_set.size()) / kSets;
    }
    DeviceArray<int32_t> dids{std::span<const int32_t>(ids)};
    DeviceArray<float> x(static_cast<size_t>(tokens * c.cols));
    random_floats<<<256, 256>>>(x.data(), tokens * c.cols, 7, 1.0f);
    DeviceArray<float> y(static_cast<size_t>(pairs * c.rows));
    const double bytes = distinct * double(expert_bytes);
    const double us = timer.median_us([&](int i) {
      gemv_experts_cuda(experts, dids.data() + (i % kSets) * pairs, pairs, x.data(), kUsed,
                        y.data(), nullptr);
    });
    check_finite(y, static_cast<size_t>(pairs * c.rows), c.name);
    print_row("gemv", c, pairs, us, bytes, copy);
    if (tokens == 1) {
      set_reference_order(true);
      const double ref = timer.median_us([&](int i) {
        linear_experts_cuda(experts, dids.data() + (i % kSets) * pairs, pairs, x.data(), kUsed,
                            y.data(), nullptr);
      });
      set_reference_order(false);
      print_row("reference", c, pairs, ref, bytes, copy);
    }
  }
}

int run(const std::string& filter) {
  int device = 0;
  MAGNETAR_CUDA_CHECK(cudaGetDevice(&device));
  cudaDeviceProp prop{};
  MAGNETAR_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  Timer timer;
  const double copy = copy_rate(timer);
  std::printf("device %s, %d SMs, L2 %.0f MB; device-to-device copy %.0f GB/s (read + write)\n",
              prop.name, prop.multiProcessorCount, prop.l2CacheSize / 1e6, copy / 1e9);
  std::printf("%-9s %-14s %-8s %15s %6s %10s %9s %8s\n", "kernel", "matrix", "type", "rows x cols",
              "tokens", "us", "GB/s", "of copy");
  const std::vector<Case> cases = {
      {"attn_q_a", GgmlType::kQ8_0, 1024, 4096, false},
      {"attn_q_b", GgmlType::kQ8_0, 32768, 1024, false},
      {"attn_kv", GgmlType::kQ8_0, 512, 4096, false},
      {"attn_out_a", GgmlType::kQ8_0, 8192, 4096, false},
      {"attn_out_b", GgmlType::kQ8_0, 4096, 8192, false},
      {"shexp_gate", GgmlType::kQ8_0, 2048, 4096, false},
      {"shexp_down", GgmlType::kQ8_0, 4096, 2048, false},
      {"lm_head", GgmlType::kQ8_0, 129280, 4096, false},
      {"compressor", GgmlType::kF16, 1024, 4096, false},
      {"router", GgmlType::kF16, 256, 4096, false},
      {"exp_gate", GgmlType::kIQ2_XXS, 2048, 4096, true},
      {"exp_down", GgmlType::kQ2_K, 4096, 2048, true},
      {"exp_gate_q4", GgmlType::kQ4_K, 2048, 4096, true},
      {"exp_down_q4", GgmlType::kQ4_K, 4096, 2048, true},
  };
  for (const Case& c : cases) {
    if (c.name.find(filter) == std::string::npos) continue;
    if (c.experts) {
      run_experts(c, timer, copy);
    } else {
      run_dense(c, timer, copy, static_cast<size_t>(prop.l2CacheSize));
    }
  }
  return 0;
}

}  // namespace
}  // namespace magnetar::gpu

int main(int argc, char** argv) {
  try {
    return magnetar::gpu::run(argc > 1 ? argv[1] : "");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "magnetar_cuda_kernel_bench: %s\n", e.what());
    return 1;
  }
}
