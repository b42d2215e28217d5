// Throughput of the CUDA backend on the model named by MAGNETAR_BENCH_MODEL (skipped without it;
// tests/gpu/run.sh with MAGNETAR_GPU_BENCH=1 synthesizes a 3-layer model of Flash's shapes). A
// measurement, not a check: it only asserts that the logits are finite, and prints the rates.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "tiny_model.h"

namespace magnetar::gpu {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

void forward_one(CudaBackend& b, backend::Sequence& s, std::span<const int32_t> tokens) {
  backend::ForwardItem item;
  item.sequence = &s;
  item.tokens = tokens;
  b.forward(std::span(&item, 1));
  for (float v : item.logits) ASSERT_TRUE(std::isfinite(v));
}

TEST(CudaThroughput, PrefillAndDecode) {
  const char* path = std::getenv("MAGNETAR_BENCH_MODEL");
  if (path == nullptr || *path == '\0') GTEST_SKIP() << "MAGNETAR_BENCH_MODEL is not set";
  if (!cuda_backend_usable()) GTEST_SKIP() << "no usable CUDA device";
  const gguf::GgufFile file = gguf::GgufFile::open(path);
  CudaOptions options;
  options.context = 4096;
  const auto load = Clock::now();
  CudaBackend b(file, options);
  std::cout << "[ speed    ] load (upload " << b.model().config().n_layer
            << " layers): " << seconds_since(load) << " s\n";
  const std::vector<int32_t> tokens = testing::random_tokens(1024, 1);
  {
    auto warm = b.new_sequence();
    forward_one(b, *warm, std::span<const int32_t>(tokens).first(16));
  }
  auto s = b.new_sequence();
  const auto prefill = Clock::now();
  forward_one(b, *s, std::span<const int32_t>(tokens).first(512));
  const double prefill_s = seconds_since(prefill);
  const auto decode = Clock::now();
  const int steps = 16;
  for (int i = 0; i < steps; ++i) {
    forward_one(b, *s, std::span<const int32_t>(tokens).subspan(512 + i, 1));
  }
  const double decode_s = seconds_since(decode);

  const int batch = 8;
  std::vector<std::unique_ptr<backend::Sequence>> seqs;
  for (int i = 0; i < batch; ++i) {
    seqs.push_back(b.new_sequence());
    forward_one(b, *seqs.back(), std::span<const int32_t>(tokens).subspan(64 * i, 64));
  }
  const auto batched = Clock::now();
  for (int step = 0; step < steps; ++step) {
    std::vector<backend::ForwardItem> items(batch);
    for (int i = 0; i < batch; ++i) {
      items[i].sequence = seqs[i].get();
      items[i].tokens = std::span<const int32_t>(tokens).subspan(600 + 16 * i + step, 1);
    }
    b.forward(items);
  }
  const double batched_s = seconds_since(batched);
  const auto layers = b.model().config().n_layer;
  std::cout << "[ speed    ] " << layers << " layers: prefill 512 tokens " << prefill_s << " s ("
            << 512 / prefill_s << " tok/s); decode batch 1 " << decode_s / steps * 1e3
            << " ms/token; decode batch 8 " << batched_s / steps * 1e3 << " ms/step ("
            << batch * steps / batched_s << " tok/s)\n";
}

}  // namespace
}  // namespace magnetar::gpu
