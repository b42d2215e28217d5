// `synth`: ds4's published inventories and byte counts, reproducible output, and synthetic
// weights that decode to the intended values. Expected sizes are gguf.md §3.6's table.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <set>

#include "gguf/gguf_reader.h"
#include "model/model_check.h"
#include "model/model_presets.h"
#include "quant/quant.h"
#include "scratch_dir.h"
#include "synth/synth_writer.h"
#include "synth/weight_init.h"

namespace magnetar::synth {
namespace {

namespace fs = std::filesystem;
using quant::GgmlType;

const TokenizerVocab& vocab() {
  static const TokenizerVocab v = load_deepseek_v4_vocab(find_tokenizer_dir());
  return v;
}

fs::path scratch(const std::string& name) { return testing::scratch_dir("synth") / name; }

struct Totals {
  std::map<GgmlType, std::pair<int, uint64_t>> by_type;
  uint64_t bytes = 0, padded = 0;
};

Totals totals_of(const SynthPlan& plan) {
  Totals t;
  for (const gguf::TensorSpec& s : plan.specs) {
    int64_t rows = 1;
    for (size_t i = 1; i < s.ne.size(); ++i) rows *= s.ne[i];
    uint64_t bytes = static_cast<uint64_t>(quant::row_bytes(s.type, s.ne[0]) * rows);
    t.by_type[s.type].first += 1;
    t.by_type[s.type].second += bytes;
    t.bytes += bytes;
    t.padded += (bytes + 31) / 32 * 32;
  }
  return t;
}

SynthOptions options_for(const char* preset) {
  SynthOptions o;
  o.preset = *preset_by_name(preset);
  return o;
}

TEST(SynthPlan, FlashQ2MatchesThePublishedFile) {
  Totals t = totals_of(plan_synthetic_model(options_for("v4-flash-q2"), vocab()));
  using P = std::pair<int, uint64_t>;
  EXPECT_EQ(t.by_type[GgmlType::kF16], P(359, 2191345664ull));
  EXPECT_EQ(t.by_type[GgmlType::kF32], P(492, 1845596ull));
  EXPECT_EQ(t.by_type[GgmlType::kQ8_0], P(345, 6598885376ull));
  EXPECT_EQ(t.by_type[GgmlType::kI32], P(3, 9308160ull));
  EXPECT_EQ(t.by_type[GgmlType::kIQ2_XXS], P(86, 47613739008ull));
  EXPECT_EQ(t.by_type[GgmlType::kQ2_K], P(43, 30299652096ull));
  EXPECT_EQ(t.by_type.size(), 6u);
  EXPECT_EQ(t.bytes, 86714775900ull);
  EXPECT_EQ(t.padded, 86714777664ull);
}

TEST(SynthPlan, FlashQ4MatchesThePublishedFile) {
  Totals t = totals_of(plan_synthetic_model(options_for("v4-flash-q4"), vocab()));
  using P = std::pair<int, uint64_t>;
  EXPECT_EQ(t.by_type[GgmlType::kQ4_K], P(129, 155826782208ull));
  EXPECT_EQ(t.bytes, 164628167004ull);
  EXPECT_EQ(t.padded, 164628168768ull);
}

TEST(SynthPlan, MetadataIsReadableAndLabelled) {
  SynthPlan plan = plan_synthetic_model(options_for("v4-pro-q2"), vocab());
  EXPECT_EQ(model::ModelConfig::from_metadata(plan.metadata), model::pro_config());
  EXPECT_EQ(*plan.metadata.find("magnetar.synthetic")->as_bool(), true);
  EXPECT_NE(plan.metadata.get_string("general.name")->find("random weights"), std::string::npos);
  EXPECT_EQ(plan.metadata.find("tokenizer.ggml.tokens")->array_size(), 129280u);
}

TEST(SynthPlan, RejectsInconsistentRequests) {
  SynthOptions o = options_for("tiny");
  o.preset.config.o_groups = 3;
  EXPECT_THROW(plan_synthetic_model(o, vocab()), model::ConfigError);
  o = options_for("tiny");
  o.preset.config.n_vocab = 1000;
  EXPECT_THROW(plan_synthetic_model(o, vocab()), model::ConfigError);
}

// The tiny files are written once and shared by the tests below.
class TinyModels : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    SynthOptions q2 = options_for("tiny");
    q2.seed = 1234;
    write_synthetic_model(q2, plan_synthetic_model(q2, vocab()), scratch("tiny-q2.gguf"));
    SynthOptions f32 = q2;
    f32.preset.mix = QuantMix::kF32;
    write_synthetic_model(f32, plan_synthetic_model(f32, vocab()), scratch("tiny-f32.gguf"));
  }
  static void TearDownTestSuite() {
    fs::remove(scratch("tiny-q2.gguf"));
    fs::remove(scratch("tiny-f32.gguf"));
  }

  static std::vector<float> decode(const gguf::GgufFile& f, const gguf::TensorInfo& t) {
    std::vector<float> out(static_cast<size_t>(t.n_elements()));
    quant::dequantize_row(t.type, f.tensor_data(t).data(), out.data(), t.n_elements());
    return out;
  }
};

TEST_F(TinyModels, AreValidV4Models) {
  gguf::GgufFile q2 = gguf::GgufFile::open(scratch("tiny-q2.gguf"));
  model::ModelCheck check = model::check_model_file(q2);
  ASSERT_TRUE(check.ok()) << check.config_error;
  EXPECT_TRUE(check.synthetic);
  EXPECT_TRUE(check.layout.has_mtp);
  EXPECT_TRUE(check.layout.ds4_types) << "the quantized tiny model uses ds4's type mix";
  std::set<GgmlType> types;
  for (const auto& t : q2.tensors()) types.insert(t.type);
  EXPECT_EQ(types,
            (std::set<GgmlType>{GgmlType::kF32, GgmlType::kF16, GgmlType::kQ8_0, GgmlType::kI32,
                                GgmlType::kIQ2_XXS, GgmlType::kQ2_K, GgmlType::kQ4_K}));
  gguf::GgufFile f32 = gguf::GgufFile::open(scratch("tiny-f32.gguf"));
  model::ModelCheck check32 = model::check_model_file(f32);
  EXPECT_TRUE(check32.ok());
  EXPECT_FALSE(check32.layout.ds4_types);
}

// The quantized file and its f32 twin hold the same weights up to each format's error. Relative
// RMS error over a tensor of Gaussian weights, expected from the formats: F16 keeps 11
// significant bits (~2e-4); Q8_0 rounds to 1/127 of the block maximum (~2.6σ), uniform error
// 2.6σ/127/√12 ≈ 0.6%; Q4_K has 16 levels over a 32-value range (~7%); Q2_K's 4 levels per
// 16 values and IQ2_XXS's 3 magnitudes per 8-value grid point keep roughly sign and magnitude
// class (measured 30% and 34% on this model). Bounds leave ~30% headroom over those values.
TEST_F(TinyModels, QuantizedModelAgreesWithItsFloatTwin) {
  gguf::GgufFile q2 = gguf::GgufFile::open(scratch("tiny-q2.gguf"));
  gguf::GgufFile f32 = gguf::GgufFile::open(scratch("tiny-f32.gguf"));
  const std::map<GgmlType, double> bound = {{GgmlType::kF32, 0.0},    {GgmlType::kF16, 3e-4},
                                            {GgmlType::kQ8_0, 0.008}, {GgmlType::kQ4_K, 0.1},
                                            {GgmlType::kQ2_K, 0.4},   {GgmlType::kIQ2_XXS, 0.45}};
  std::map<GgmlType, double> worst;
  for (const gguf::TensorInfo& t : q2.tensors()) {
    if (t.type == GgmlType::kI32) {
      auto a = q2.tensor_data(t);
      auto b = f32.tensor_data(*f32.find_tensor(t.name));
      EXPECT_TRUE(std::equal(a.begin(), a.end(), b.begin(), b.end())) << t.name;
      continue;
    }
    std::vector<float> x = decode(q2, t), ref = decode(f32, *f32.find_tensor(t.name));
    double err = 0, norm = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      err += (x[i] - ref[i]) * static_cast<double>(x[i] - ref[i]);
      norm += static_cast<double>(ref[i]) * ref[i];
    }
    double rel = std::sqrt(err / norm);
    worst[t.type] = std::max(worst[t.type], rel);
    EXPECT_LE(rel, bound.at(t.type)) << t.name << " " << quant::type_name(t.type);
  }
  for (const auto& [type, rel] : worst) {
    std::printf("  tiny q2 vs f32: worst relative RMS error %-8s %.4f\n",
                std::string(quant::type_name(type)).c_str(), rel);
  }
}

TEST_F(TinyModels, WeightsHaveTheIntendedDistributions) {
  gguf::GgufFile f = gguf::GgufFile::open(scratch("tiny-f32.gguf"));
  model::ModelConfig c = model::ModelConfig::from_metadata(f.metadata());
  for (const model::ExpectedTensor& e : model::model_tensors(c, true)) {
    const gguf::TensorInfo* t = f.find_tensor(e.name);
    if (t == nullptr || t->type == GgmlType::kI32 || t->n_elements() < 1000) continue;
    Distribution d = distribution_for(e, c);
    std::vector<float> v = decode(f, *t);
    double sum = 0, sq = 0;
    for (float x : v) sum += x;
    double mean = sum / static_cast<double>(v.size());
    for (float x : v) sq += (x - mean) * (x - mean);
    double sd = std::sqrt(sq / static_cast<double>(v.size()));
    EXPECT_NEAR(mean, d.mean, 4 * d.stddev / std::sqrt(static_cast<double>(v.size())) + 1e-6)
        << e.name;
    EXPECT_NEAR(sd, d.stddev, 0.05 * d.stddev) << e.name;
  }
  // Hash routing: every token maps to distinct experts in range.
  const gguf::TensorInfo* map = f.find_tensor("blk.0.ffn_gate_tid2eid.weight");
  ASSERT_NE(map, nullptr);
  const auto* ids = reinterpret_cast<const int32_t*>(f.tensor_data(*map).data());
  for (int64_t row = 0; row < map->ne[1]; ++row) {
    std::set<int32_t> seen(ids + row * map->ne[0], ids + (row + 1) * map->ne[0]);
    ASSERT_EQ(seen.size(), static_cast<size_t>(map->ne[0])) << "token " << row;
    ASSERT_GE(*seen.begin(), 0);
    ASSERT_LT(*seen.rbegin(), static_cast<int32_t>(c.n_expert));
  }
}

TEST(Synth, OutputIsIndependentOfThreadCount) {
  SynthOptions o = options_for("tiny");
  o.preset.encoding = Encoding::kRandomCodes;
  SynthPlan plan = plan_synthetic_model(o, vocab());
  o.threads = 1;
  write_synthetic_model(o, plan, scratch("one.gguf"));
  o.threads = 3;
  write_synthetic_model(o, plan, scratch("three.gguf"));
  gguf::GgufFile a = gguf::GgufFile::open(scratch("one.gguf"));
  gguf::GgufFile b = gguf::GgufFile::open(scratch("three.gguf"));
  ASSERT_EQ(a.file_size(), b.file_size());
  EXPECT_TRUE(std::equal(a.bytes().begin(), a.bytes().end(), b.bytes().begin()));
  o.seed = 43;
  write_synthetic_model(o, plan_synthetic_model(o, vocab()), scratch("other-seed.gguf"));
  gguf::GgufFile c = gguf::GgufFile::open(scratch("other-seed.gguf"));
  const gguf::TensorInfo* t = c.find_tensor("blk.0.attn_q_a.weight");
  auto x = a.tensor_data(*a.find_tensor(t->name)), y = c.tensor_data(*t);
  EXPECT_FALSE(std::equal(x.begin(), x.end(), y.begin())) << "the seed must matter";
  for (const char* n : {"one.gguf", "three.gguf", "other-seed.gguf"}) fs::remove(scratch(n));
}

// Random-code blocks decode to zero-mean weights with the intended spread.
TEST(Synth, RandomCodesHaveTheIntendedSpread) {
  for (GgmlType type : {GgmlType::kQ8_0, GgmlType::kQ2_K, GgmlType::kQ4_K, GgmlType::kIQ2_XXS}) {
    SCOPED_TRACE(std::string(quant::type_name(type)));
    model::ExpectedTensor tensor{"blk.0.attn_q_a.weight", {1024, 64}, model::WeightClass::kDense};
    ChunkRequest r{
        &tensor, type,         {Distribution::Kind::kNormal, 0.0f, 0.03f}, Encoding::kRandomCodes,
        9,       {0, 0, 64, 0}};
    std::vector<uint8_t> bytes;
    std::vector<float> scratch;
    generate_chunk(r, bytes, scratch);
    ASSERT_EQ(bytes.size(), static_cast<size_t>(quant::row_bytes(type, 1024) * 64));
    std::vector<float> v(1024 * 64);
    quant::dequantize_row(type, bytes.data(), v.data(), static_cast<int64_t>(v.size()));
    double sum = 0, sq = 0;
    for (float x : v) sum += x, sq += static_cast<double>(x) * x;
    double mean = sum / v.size(), rms = std::sqrt(sq / v.size());
    EXPECT_NEAR(rms, 0.03, 0.03 * 0.08);
    EXPECT_LT(std::abs(mean), 0.03 * 0.05);
  }
}

}  // namespace
}  // namespace magnetar::synth
