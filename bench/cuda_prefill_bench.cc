// magnetar_cuda_prefill_bench: the prefill matrix products of one DeepSeek V4 Flash layer on the
// tensor-core path (gemm_tc.cuh, expert_groups.cuh), on random valid weights of Flash's shapes
// and types, for chunks of 512, 2048 and 4096 tokens.
//
// Reports, per chunk: each dense product of a ratio-4 layer (Q8_0 attention and shared expert,
// F16 compressors, indexer, router and hyper-connection mixers) with its time and TFLOP/s; the
// routed experts (256 experts, IQ2_XXS gate/up, Q2_K down, 6 random experts per token) as grouped
// GEMMs; the layer's total and the prefill rate it implies for 43 layers (products only). The f16
// decoding of the weights is timed on its own; q_a and the routed experts are compared with the
// GEMV at small token counts (where the tensor cores start to pay), and q_a in the CPU's order.
// Timings are CUDA events around each step, the median of 3 runs after a warm-up. Runs in well
// under a minute; every CUDA call is checked.
#include <cuda_runtime_api.h>
#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <exception>
#include <functional>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/device_array.h"
#include "backend/cuda/device_weights.h"
#include "backend/cuda/expert_groups.cuh"
#include "backend/cuda/f16_convert.cuh"
#include "backend/cuda/gemm_tc.cuh"
#include "backend/cuda/linear.cuh"
#include "quant/blocks.h"
#include "quant/fp16.h"
#include "quant/ggml_type.h"

namespace magnetar::gpu {
namespace {

using quant::GgmlType;

constexpr int64_t kDim = 4096, kFfn = 2048, kExperts = 256, kUsed = 6, kLayers = 43;
constexpr int kRuns = 3;

// splitmix64: fast, good enough for random bytes.
struct Random {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  float uniform(float lo, float hi) {
    return lo + (hi - lo) * static_cast<float>(next() >> 40) * 0x1p-24f;
  }
};

// Random bytes that decode to sane weights: every code pattern of these formats is valid, so only
// the f16 scales (and F16 values) are drawn to keep weights around 1e-2.
std::vector<uint8_t> random_matrix(GgmlType type, int64_t rows, int64_t cols, uint64_t seed) {
  std::vector<uint8_t> bytes(static_cast<size_t>(rows * quant::row_bytes(type, cols)));
  Random rng{seed};
  for (size_t i = 0; i + 8 <= bytes.size(); i += 8) {
    const uint64_t v = rng.next();
    std::copy_n(reinterpret_cast<const uint8_t*>(&v), 8, bytes.data() + i);
  }
  auto fix = [&]<typename Block>(auto&& set) {
    auto* blocks = reinterpret_cast<Block*>(bytes.data());
    for (size_t b = 0; b < bytes.size() / sizeof(Block); ++b) set(blocks[b]);
  };
  switch (type) {
    case GgmlType::kF16:
      fix.template operator()<uint16_t>(
          [&](uint16_t& h) { h = quant::f32_to_f16(rng.uniform(-0.03f, 0.03f)); });
      break;
    case GgmlType::kQ8_0:
      fix.template operator()<quant::BlockQ8_0>(
          [&](quant::BlockQ8_0& b) { b.d = quant::f32_to_f16(rng.uniform(1e-4f, 3e-4f)); });
      break;
    case GgmlType::kIQ2_XXS:
      fix.template operator()<quant::BlockIQ2_XXS>(
          [&](quant::BlockIQ2_XXS& b) { b.d = quant::f32_to_f16(rng.uniform(1e-3f, 3e-3f)); });
      break;
    case GgmlType::kQ2_K:
      fix.template operator()<quant::BlockQ2_K>([&](quant::BlockQ2_K& b) {
        b.d = quant::f32_to_f16(rng.uniform(1e-3f, 3e-3f));
        b.dmin = quant::f32_to_f16(rng.uniform(1e-3f, 3e-3f));
      });
      break;
    default:
      throw std::invalid_argument("random_matrix: unsupported type");
  }
  return bytes;
}

struct DenseWeight {
  const char* name = nullptr;
  DeviceArray<uint8_t> data;
  DeviceMatrix m;
  int calls = 1;         // o_a: one call per group, each on its slice of the input
  int64_t x_stride = 0;  // input row stride (cols unless grouped)
};

DenseWeight dense(const char* name, GgmlType type, int64_t rows, int64_t cols, uint64_t seed,
                  int calls = 1) {
  DenseWeight w;
  w.name = name;
  const std::vector<uint8_t> bytes = random_matrix(type, rows, cols, seed);
  w.data = DeviceArray<uint8_t>(std::span<const uint8_t>(bytes));
  w.m = {name, type, w.data.data(), cols, rows, quant::row_bytes(type, cols)};
  w.calls = calls;
  w.x_stride = cols * calls;
  return w;
}

// Median milliseconds of `runs` timed calls of f on `stream`, after one warm-up call.
double time_ms(cudaStream_t stream, const std::function<void()>& f, int runs = kRuns) {
  cudaEvent_t start, stop;
  MAGNETAR_CUDA_CHECK(cudaEventCreate(&start));
  MAGNETAR_CUDA_CHECK(cudaEventCreate(&stop));
  f();
  MAGNETAR_CUDA_CHECK(cudaStreamSynchronize(stream));
  std::vector<double> ms;
  for (int i = 0; i < runs; ++i) {
    MAGNETAR_CUDA_CHECK(cudaEventRecord(start, stream));
    f();
    MAGNETAR_CUDA_CHECK(cudaEventRecord(stop, stream));
    MAGNETAR_CUDA_CHECK(cudaEventSynchronize(stop));
    float t = 0;
    MAGNETAR_CUDA_CHECK(cudaEventElapsedTime(&t, start, stop));
    ms.push_back(t);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

DeviceArray<float> random_floats(size_t n, uint64_t seed, float scale) {
  std::vector<float> v(n);
  Random rng{seed};
  for (float& x : v) x = rng.uniform(-scale, scale);
  return DeviceArray<float>(std::span<const float>(v));
}

// 6 distinct random experts per token, and route weights.
void random_routing(int64_t tokens, uint64_t seed, std::vector<int32_t>& ids,
                    std::vector<float>& weights) {
  std::mt19937_64 rng(seed);
  ids.clear();
  weights.clear();
  std::vector<int32_t> all(kExperts);
  std::iota(all.begin(), all.end(), 0);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int k = 0; k < kUsed; ++k) {
      std::swap(all[k], all[k + rng() % (kExperts - k)]);
      ids.push_back(all[k]);
      weights.push_back(0.25f);
    }
  }
}

int run() {
  int device = 0;
  MAGNETAR_CUDA_CHECK(cudaGetDevice(&device));
  cudaDeviceProp prop{};
  MAGNETAR_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  fmt::print("device: {} ({} SMs, {:.1f} GiB)\n", prop.name, prop.multiProcessorCount,
             prop.totalGlobalMem / double(1 << 30));
  cudaStream_t stream;
  MAGNETAR_CUDA_CHECK(cudaStreamCreate(&stream));

  // One ratio-4 layer's dense products (the largest layer kind), Flash shapes.
  std::vector<DenseWeight> layer;
  uint64_t seed = 1;
  layer.push_back(dense("hc_attn mixer F16", GgmlType::kF16, 24, 4 * kDim, seed++));
  layer.push_back(dense("q_a Q8_0", GgmlType::kQ8_0, 1024, kDim, seed++));
  layer.push_back(dense("kv Q8_0", GgmlType::kQ8_0, 512, kDim, seed++));
  layer.push_back(dense("compressor kv F16", GgmlType::kF16, 1024, kDim, seed++));
  layer.push_back(dense("compressor gate F16", GgmlType::kF16, 1024, kDim, seed++));
  layer.push_back(dense("indexer cmp kv F16", GgmlType::kF16, 256, kDim, seed++));
  layer.push_back(dense("indexer cmp gate F16", GgmlType::kF16, 256, kDim, seed++));
  layer.push_back(dense("indexer proj F16", GgmlType::kF16, 64, kDim, seed++));
  layer.push_back(dense("q_b Q8_0", GgmlType::kQ8_0, 32768, 1024, seed++));
  layer.push_back(dense("indexer q_b F16", GgmlType::kF16, 8192, 1024, seed++));
  layer.push_back(dense("o_a Q8_0 (8 groups)", GgmlType::kQ8_0, 1024, kDim, seed++, 8));
  layer.push_back(dense("o_b Q8_0", GgmlType::kQ8_0, kDim, 8192, seed++));
  layer.push_back(dense("hc_ffn mixer F16", GgmlType::kF16, 24, 4 * kDim, seed++));
  layer.push_back(dense("router F16", GgmlType::kF16, kExperts, kDim, seed++));
  layer.push_back(dense("shared gate Q8_0", GgmlType::kQ8_0, kFfn, kDim, seed++));
  layer.push_back(dense("shared up Q8_0", GgmlType::kQ8_0, kFfn, kDim, seed++));
  layer.push_back(dense("shared down Q8_0", GgmlType::kQ8_0, kDim, kFfn, seed++));

  // Routed experts: 16 distinct random experts repeated over the 256 slots (the bytes do not
  // change the timing; 256 distinct slots keep the traffic real).
  const int64_t gate_bytes = kFfn * quant::row_bytes(GgmlType::kIQ2_XXS, kDim);
  const int64_t down_bytes = kDim * quant::row_bytes(GgmlType::kQ2_K, kFfn);
  DeviceArray<uint8_t> expert_memory(static_cast<size_t>(kExperts * (2 * gate_bytes + down_bytes)));
  std::vector<const uint8_t*> gate_table, up_table, down_table;
  for (int64_t e = 0; e < kExperts; ++e) {
    uint8_t* base = expert_memory.data() + e * (2 * gate_bytes + down_bytes);
    gate_table.push_back(base);
    up_table.push_back(base + gate_bytes);
    down_table.push_back(base + 2 * gate_bytes);
    if (e < 16) {
      const auto g = random_matrix(GgmlType::kIQ2_XXS, 2 * kFfn, kDim, 1000 + e);
      const auto d = random_matrix(GgmlType::kQ2_K, kDim, kFfn, 2000 + e);
      MAGNETAR_CUDA_CHECK(cudaMemcpy(base, g.data(), g.size(), cudaMemcpyHostToDevice));
      MAGNETAR_CUDA_CHECK(
          cudaMemcpy(base + 2 * gate_bytes, d.data(), d.size(), cudaMemcpyHostToDevice));
    } else {
      MAGNETAR_CUDA_CHECK(cudaMemcpy(base, gate_table[e % 16], 2 * gate_bytes + down_bytes,
                                     cudaMemcpyDeviceToDevice));
    }
  }
  DeviceArray<const uint8_t*> gate_dev{std::span<const uint8_t* const>(gate_table)};
  DeviceArray<const uint8_t*> up_dev{std::span<const uint8_t* const>(up_table)};
  DeviceArray<const uint8_t*> down_dev{std::span<const uint8_t* const>(down_table)};
  const DeviceMatrix gate_shape{"ffn_gate_exps",
                                GgmlType::kIQ2_XXS,
                                nullptr,
                                kDim,
                                kFfn,
                                quant::row_bytes(GgmlType::kIQ2_XXS, kDim)};
  const DeviceMatrix down_shape{"ffn_down_exps",
                                GgmlType::kQ2_K,
                                nullptr,
                                kFfn,
                                kDim,
                                quant::row_bytes(GgmlType::kQ2_K, kFfn)};
  const DeviceExperts gate{gate_shape, kExperts, gate_dev.data()};
  const DeviceExperts up{gate_shape, kExperts, up_dev.data()};
  const DeviceExperts down{down_shape, kExperts, down_dev.data()};
  const ExpertFfn ffn{&gate, &up, &down, 10.0f, true};

  TensorCoreGemm gemm;
  ExpertGroupBuffers groups;
  const int64_t max_tokens = 4096;
  // Inputs: o_a's 8 groups read rows of 8 · 4096 values; outputs: q_b's 32768 per token.
  DeviceArray<float> x = random_floats(static_cast<size_t>(max_tokens * 8 * kDim), 7, 1.0f);
  DeviceArray<float> y(static_cast<size_t>(max_tokens * 32768));

  // f16 decoding alone: the dense layer, and every expert (what a chunk with all experts active
  // decodes), through the scratch in groups as the grouped path does.
  {
    double dense_ms = 0, dense_bytes = 0;
    for (const DenseWeight& w : layer) {
      const int64_t rows = std::min<int64_t>(w.m.rows, gemm.weight_scratch_elements() / w.m.cols);
      dense_ms += time_ms(stream, [&] {
        for (int64_t r0 = 0; r0 < w.m.rows; r0 += rows) {
          decode_rows_f16_cuda(w.m, r0, std::min(rows, w.m.rows - r0), gemm.weight_scratch(),
                               stream);
        }
      });
      dense_bytes += double(w.m.rows) * w.m.cols * 2;
    }
    const int64_t slot = 2 * kFfn * kDim;
    const int64_t per_group = gemm.weight_scratch_elements() / slot;
    std::vector<int32_t> all(kExperts);
    std::iota(all.begin(), all.end(), 0);
    DeviceArray<int32_t> ids{std::span<const int32_t>(all)};
    const double experts_ms = time_ms(stream, [&] {
      for (int64_t e0 = 0; e0 < kExperts; e0 += per_group) {
        const int64_t n = std::min(per_group, kExperts - e0);
        decode_experts_f16_cuda(gate, ids.data() + e0, n, gemm.weight_scratch(), slot, stream);
        decode_experts_f16_cuda(up, ids.data() + e0, n, gemm.weight_scratch() + kFfn * kDim, slot,
                                stream);
        decode_experts_f16_cuda(down, ids.data() + e0, n, gemm.weight_scratch(), kDim * kFfn,
                                stream);
      }
    });
    const double expert_bytes = double(kExperts) * 3 * kFfn * kDim * 2;
    fmt::print(
        "f16 decode: dense layer {:.3f} ms ({:.0f} GB/s written), 256 experts {:.3f} ms "
        "({:.0f} GB/s written)\n",
        dense_ms, dense_bytes / dense_ms * 1e-6, experts_ms, expert_bytes / experts_ms * 1e-6);
  }

  for (int64_t C : {512, 2048, 4096}) {
    fmt::print("\nchunk of {} tokens\n{:<24} {:>10} {:>10}\n", C, "product", "ms", "TFLOP/s");
    ScopedTensorCoreGemm scope(&gemm);
    double dense_ms = 0, dense_flop = 0;
    for (const DenseWeight& w : layer) {
      const double ms = time_ms(stream, [&] {
        for (int g = 0; g < w.calls; ++g) {
          linear_cuda(w.m, x.data() + g * w.m.cols, w.x_stride, C, y.data() + g * w.m.rows,
                      w.m.rows * w.calls, stream);
        }
      });
      const double flop = 2.0 * C * w.m.rows * w.m.cols * w.calls;
      fmt::print("{:<24} {:>10.3f} {:>10.1f}\n", w.name, ms, flop / ms * 1e-9);
      dense_ms += ms;
      dense_flop += flop;
    }
    std::vector<int32_t> ids;
    std::vector<float> weights;
    random_routing(C, 100 + C, ids, weights);
    DeviceArray<int32_t> dids{std::span<const int32_t>(ids)};
    DeviceArray<float> dweights{std::span<const float>(weights)};
    const double experts_ms = time_ms(stream, [&] {
      routed_experts_tensor_core(gemm, ffn, dids.data(), dweights.data(), x.data(), C, kUsed,
                                 groups, stream);
    });
    const double experts_flop = 2.0 * C * kUsed * 3 * kDim * kFfn;
    fmt::print("{:<24} {:>10.3f} {:>10.1f}   ({} groups, {} rows for {} pairs)\n", "routed experts",
               experts_ms, experts_flop / experts_ms * 1e-9, groups.plan.groups.size(),
               groups.plan.rows, C * kUsed);
    const double total_ms = dense_ms + experts_ms;
    fmt::print("{:<24} {:>10.3f} {:>10.1f}\n{:<24} {:>10.3f} {:>10.1f}\n", "dense total", dense_ms,
               dense_flop / dense_ms * 1e-9, "layer total", total_ms,
               (dense_flop + experts_flop) / total_ms * 1e-9);
    fmt::print("products of {} layers: {:.0f} tok/s\n", kLayers, C / (total_ms * 1e-3 * kLayers));
  }

  // Where the tensor cores start to pay (TensorCoreOptions::min_tokens, min_expert_tokens): q_a
  // and the routed experts at small token counts on the tensor cores, on the GEMV (linear.cuh's
  // default without them) and once in the CPU's order.
  fmt::print("\n{:<10} {:>12} {:>12} {:>16} {:>16}\n", "tokens", "q_a TC ms", "q_a GEMV ms",
             "experts TC ms", "experts GEMV ms");
  for (int64_t C : {8, 16, 32, 64, 128, 512}) {
    const DenseWeight& q_a = layer[1];
    auto q_a_product = [&] {
      linear_cuda(q_a.m, x.data(), q_a.m.cols, C, y.data(), q_a.m.rows, stream);
    };
    double q_a_tc = 0;
    {
      TensorCoreOptions o;
      o.min_tokens = 1;
      o.min_expert_tokens = 1;
      TensorCoreGemm always(o);
      ScopedTensorCoreGemm scope(&always);
      q_a_tc = time_ms(stream, q_a_product);
    }
    const double q_a_gemv = time_ms(stream, q_a_product);
    std::vector<int32_t> ids;
    std::vector<float> weights;
    random_routing(C, 5 + C, ids, weights);
    DeviceArray<int32_t> dids{std::span<const int32_t>(ids)};
    DeviceArray<float> dweights{std::span<const float>(weights)};
    const double experts_tc = time_ms(stream, [&] {
      routed_experts_tensor_core(gemm, ffn, dids.data(), dweights.data(), x.data(), C, kUsed,
                                 groups, stream);
    });
    // The per-pair path's three projections (its SwiGLU and rounding are negligible here).
    const double experts_gemv = time_ms(stream, [&] {
      linear_experts_cuda(gate, dids.data(), C * kUsed, x.data(), kUsed, y.data(), stream);
      linear_experts_cuda(up, dids.data(), C * kUsed, x.data(), kUsed, y.data(), stream);
      linear_experts_cuda(down, dids.data(), C * kUsed, x.data(), 1, y.data(), stream);
    });
    fmt::print("{:<10} {:>12.3f} {:>12.3f} {:>16.3f} {:>16.3f}\n", C, q_a_tc, q_a_gemv, experts_tc,
               experts_gemv);
  }
  {
    const int64_t C = 512;
    const DenseWeight& q_a = layer[1];
    set_reference_order(true);
    const double ms = time_ms(
        stream, [&] { linear_cuda(q_a.m, x.data(), q_a.m.cols, C, y.data(), q_a.m.rows, stream); },
        1);
    set_reference_order(false);
    fmt::print("reference order, {} tokens: q_a {:.3f} ms ({:.2f} TFLOP/s)\n", C, ms,
               2.0 * C * q_a.m.rows * q_a.m.cols / ms * 1e-9);
  }
  MAGNETAR_CUDA_CHECK(cudaStreamSynchronize(stream));
  MAGNETAR_CUDA_CHECK(cudaStreamDestroy(stream));
  return 0;
}

}  // namespace
}  // namespace magnetar::gpu

int main() {
  try {
    return magnetar::gpu::run();
  } catch (const std::exception& e) {
    fmt::print(stderr, "magnetar_cuda_prefill_bench: {}\n", e.what());
    return 1;
  }
}
