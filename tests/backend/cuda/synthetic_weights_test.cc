// Random weights made in GPU memory (backend/cuda/synthetic_weights.h): every generated type
// decodes to finite values of the intended spread; the synthetic tiny model computes what the CPU
// reference computes from the same bytes written to a file (so every tensor reached the field its
// name says); the expert-cache placement gives the same bits; and the engine and the bench run on
// `--synthetic tiny`. Needs a CUDA GPU (tests skip themselves without one).
#include "backend/cuda/synthetic_weights.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/cuda_backend.h"
#include "engine/bench.h"
#include "engine/engine.h"
#include "engine/synthetic_model.h"
#include "gguf/gguf_writer.h"
#include "logit_agreement.h"
#include "model/model_presets.h"
#include "quant/quant.h"
#include "synth/synth_writer.h"
#include "tiny_model.h"

namespace magnetar::gpu {
namespace {

using quant::GgmlType;
using testing::random_tokens;

class SyntheticWeightsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_backend_usable()) GTEST_SKIP() << "no usable CUDA device";
  }
};

// Decoded values of a whole generated tensor.
std::vector<float> decode(GgmlType type, const DeviceArray<uint8_t>& tensor, int64_t cols,
                          int64_t rows) {
  const std::vector<uint8_t> bytes = tensor.download();
  std::vector<float> values(static_cast<size_t>(cols * rows));
  const int64_t row_bytes = quant::row_bytes(type, cols);
  for (int64_t r = 0; r < rows; ++r) {
    quant::dequantize_row(type, bytes.data() + r * row_bytes, values.data() + r * cols, cols);
  }
  return values;
}

TEST_F(SyntheticWeightsTest, EveryTypeDecodesToFiniteValuesOfTheWantedSpread) {
  constexpr int64_t kCols = 1024, kRows = 64;
  constexpr float kStddev = 0.02f;
  for (GgmlType type : {GgmlType::kF32, GgmlType::kF16, GgmlType::kQ8_0, GgmlType::kQ2_K,
                        GgmlType::kQ4_K, GgmlType::kIQ2_XXS}) {
    SCOPED_TRACE(std::string(quant::type_name(type)));
    const DeviceArray<uint8_t> t = make_random_tensor(type, kCols, kRows, 0.0f, kStddev, 7, 3);
    ASSERT_EQ(t.size(), static_cast<size_t>(quant::row_bytes(type, kCols) * kRows));
    const std::vector<float> v = decode(type, t, kCols, kRows);
    double sum = 0, sum_sq = 0, peak = 0;
    for (float x : v) {
      ASSERT_TRUE(std::isfinite(x));
      sum += x;
      sum_sq += double(x) * x;
      peak = std::max(peak, std::abs(double(x)));
    }
    const double mean = sum / v.size(), rms = std::sqrt(sum_sq / v.size());
    EXPECT_NEAR(rms, kStddev, 0.1 * kStddev);
    EXPECT_LT(std::abs(mean), 0.1 * kStddev);
    EXPECT_LT(peak, 30 * kStddev);
    if (type == GgmlType::kF32 || type == GgmlType::kF16) {
      // Uniform of that variance: within ±√3·σ (and f16 rounding).
      EXPECT_LE(peak, std::sqrt(3.0) * kStddev * 1.001);
    }
  }
  // A mean for the float types (norm weights near 1).
  const DeviceArray<uint8_t> norms = make_random_tensor(GgmlType::kF32, 4096, 1, 1.0f, 0.05f, 1, 2);
  for (float x : decode(GgmlType::kF32, norms, 4096, 1)) {
    EXPECT_GE(x, 1.0f - std::sqrt(3.0f) * 0.05f);
    EXPECT_LE(x, 1.0f + std::sqrt(3.0f) * 0.05f);
  }
}

TEST_F(SyntheticWeightsTest, StreamsAreReproducibleAndDistinct) {
  const auto bytes = [](uint64_t seed, uint64_t stream) {
    return make_random_tensor(GgmlType::kQ2_K, 512, 9, 0.0f, 0.1f, seed, stream).download();
  };
  EXPECT_EQ(bytes(1, 2), bytes(1, 2));
  EXPECT_NE(bytes(1, 2), bytes(1, 3));
  EXPECT_NE(bytes(1, 2), bytes(2, 2));
}

TEST_F(SyntheticWeightsTest, RefusesWhatItCannotMake) {
  EXPECT_THROW(make_random_tensor(GgmlType::kQ8_0, 100, 1, 0.0f, 1.0f, 1, 1),
               std::invalid_argument);  // not whole blocks
  EXPECT_THROW(make_random_tensor(GgmlType::kBF16, 64, 1, 0.0f, 1.0f, 1, 1),
               std::invalid_argument);  // no generator
  EXPECT_THROW(make_random_tensor(GgmlType::kQ8_0, 64, 1, 1.0f, 1.0f, 1, 1),
               std::invalid_argument);  // quantized tensors are centred
}

// Writes the generated tensors, by their names, into a model file with the preset's header.
std::filesystem::path write_model(const SyntheticWeights& w, const model::ModelConfig& config,
                                  const SyntheticSpec& spec) {
  synth::SynthOptions options;
  options.preset = {"tiny", config, spec.mix, false, synth::Encoding::kRandomCodes};
  options.seed = spec.seed;
  const synth::SynthPlan plan = synth::plan_synthetic_model(
      options, synth::load_deepseek_v4_vocab(synth::find_tokenizer_dir(), config.n_vocab));
  std::vector<gguf::TensorSpec> specs;
  for (const PlacedTensor& p : w.placed) specs.push_back({p.tensor->name, p.type, p.tensor->ne});
  const std::filesystem::path path =
      testing::scratch_dir("synthetic_weights") / "tiny-from-gpu.gguf";
  gguf::GgufWriter writer(path, plan.metadata, specs);
  for (size_t i = 0; i < w.placed.size(); ++i) {
    const PlacedTensor& p = w.placed[i];
    std::vector<uint8_t> bytes(p.bytes);
    if (p.on_device) {
      MAGNETAR_CUDA_CHECK(cudaMemcpy(bytes.data(), p.data, p.bytes, cudaMemcpyDeviceToHost));
    } else {
      std::memcpy(bytes.data(), p.data, p.bytes);
    }
    writer.write(i, 0, bytes);
  }
  writer.commit();
  return path;
}

TEST_F(SyntheticWeightsTest, TinyModelComputesWhatTheCpuComputesFromTheSameBytes) {
  const model::ModelConfig config = model::tiny_config();
  const SyntheticSpec spec{synth::QuantMix::kQ2, 11};
  CudaOptions o;
  o.context = 256;
  o.official_numerics = false;  // plain numerics: GPU and CPU within float roundings
  o.reference_order = true;     // the bound below is for the CPU's summation order
  o.progress = false;
  CudaBackend gpu(config, spec, o);
  EXPECT_EQ(gpu.model().expert_cache(), nullptr);

  // The same generator again (it is deterministic), written out by tensor name and bound by the
  // CPU's own binder.
  const std::unique_ptr<SyntheticWeights> weights =
      make_synthetic_weights(config, spec, false, false);
  EXPECT_EQ(weights->placed.size(), weights->tensors.size());
  const gguf::GgufFile file = gguf::GgufFile::open(write_model(*weights, config, spec));
  cpu::CpuOptions co;
  co.official_numerics = false;
  cpu::CpuBackend cpu(file, co);

  const std::vector<int32_t> tokens = random_tokens(60, 5);
  const std::vector<float> g = chunked_logits(gpu, tokens, 7), c = chunked_logits(cpu, tokens, 7);
  ASSERT_EQ(g.size(), c.size());
  const size_t V = config.n_vocab;
  for (size_t pos = 0; pos < tokens.size(); ++pos) {
    double diff = 0, mag = 0;
    for (size_t i = pos * V; i < (pos + 1) * V; ++i) {
      ASSERT_TRUE(std::isfinite(g[i])) << "position " << pos;
      diff = std::max(diff, std::abs(double(g[i]) - c[i]));
      mag = std::max(mag, std::abs(double(c[i])));
    }
    EXPECT_LE(diff, 1e-5 * mag) << "position " << pos;  // the CUDA backend's plain-numerics bound
  }
}

TEST_F(SyntheticWeightsTest, ExpertsInHostMemoryGiveTheSameBits) {
  const model::ModelConfig config = model::tiny_config();
  const SyntheticSpec spec{synth::QuantMix::kQ2, 12};
  CudaOptions o;
  o.context = 256;
  o.reference_order = true;  // as the file-backed expert-cache test, whatever the fast paths do
  o.progress = false;
  CudaBackend resident(config, spec, o);
  const WeightBytes sizes = synthetic_weight_bytes(config, spec);
  o.gpu_mem = sizes.total - sizes.routed_experts / 2;  // about half the experts fit
  CudaBackend spilled(config, spec, o);
  ASSERT_EQ(resident.model().expert_cache(), nullptr);
  ASSERT_NE(spilled.model().expert_cache(), nullptr);
  const std::vector<int32_t> tokens = random_tokens(40, 6);
  const std::vector<float> a = chunked_logits(spilled, tokens, 7),
                           b = chunked_logits(resident, tokens, 7);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
  EXPECT_GT(spilled.model().expert_cache()->misses(), 0);
}

TEST_F(SyntheticWeightsTest, EngineAndBenchRunOnSyntheticTiny) {
  engine::EngineOptions o;
  o.synthetic = "tiny";
  o.backend = "cuda";
  o.context = 96;
  engine::Engine engine(o);
  EXPECT_TRUE(engine.synthetic());
  EXPECT_EQ(engine.backend_name(), "cuda");
  EXPECT_EQ(engine.identity(), engine::sha256(engine::synthetic_model_header(
                                   "tiny", synth::QuantMix::kQ2, o.synthetic_seed)));

  engine::BenchOptions b;
  b.ctx_start = 16;
  b.ctx_max = 64;
  b.step_incr = 24;
  b.gen_tokens = 8;
  b.batch = 2;
  engine::Bench bench(engine, b, random_tokens(64, 7));
  int64_t prefilled = 0;
  while (!bench.done()) {
    const engine::BenchRow row = bench.next();  // throws for non-finite or all-equal logits
    prefilled += row.prefill_tokens;
    EXPECT_EQ(prefilled, row.ctx_tokens);
    EXPECT_GT(row.logits_stddev, 0);
    EXPECT_GT(row.gen_tps(), 0);
    EXPECT_GT(row.kvcache_bytes, 0u);
  }
  EXPECT_EQ(prefilled, 64);
}

}  // namespace
}  // namespace magnetar::gpu
