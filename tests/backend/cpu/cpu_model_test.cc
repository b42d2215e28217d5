// The CPU reference forward pass: chunked prefill and batched decode are the same computation as
// token-by-token processing, the state machinery really exercises ring wrap-around, compressed
// rows and indexer top-k, and the quantized tiny model stays close to its float32 twin. The
// numerical oracle (an independent NumPy implementation) is tests/reference/.
#include "backend/cpu/cpu_model.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "gguf/gguf_writer.h"
#include "model/model_presets.h"
#include "scratch_dir.h"
#include "synth/synth_writer.h"
#include "tiny_model.h"

namespace magnetar::cpu {
namespace {

namespace fs = std::filesystem;

fs::path model_path(const std::string& types) { return testing::tiny_model(types, 7, true); }

ForwardItem make_item(SequenceState* state, std::span<const int32_t> tokens) {
  ForwardItem item;
  item.state = state;
  item.tokens = tokens;
  return item;
}

using testing::random_tokens;

// max over positions of max|a − b| / max|b|, the agreement measure used throughout.
double relative_difference(const std::vector<float>& a, const std::vector<float>& b, int64_t V) {
  double worst = 0;
  for (size_t row = 0; row * V < b.size(); ++row) {
    double diff = 0, mag = 0;
    for (int64_t i = 0; i < V; ++i) {
      diff = std::max(diff, std::abs(double(a[row * V + i]) - b[row * V + i]));
      mag = std::max(mag, std::abs(double(b[row * V + i])));
    }
    worst = std::max(worst, diff / mag);
  }
  return worst;
}

class CpuModelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    f32_ = new gguf::GgufFile(gguf::GgufFile::open(model_path("f32")));
    q2_ = new gguf::GgufFile(gguf::GgufFile::open(model_path("q2")));
    q4_ = new gguf::GgufFile(gguf::GgufFile::open(model_path("q4")));
  }
  static void TearDownTestSuite() {
    delete f32_;
    delete q2_;
    delete q4_;
  }

  // Logits of every position (and MTP logits when asked) for `tokens` fed in chunks of `chunk`.
  static std::pair<std::vector<float>, std::vector<float>> run(CpuModel& model,
                                                               const std::vector<int32_t>& tokens,
                                                               int64_t chunk, bool mtp) {
    SequenceState state = model.new_sequence(mtp);
    std::vector<float> logits, mtp_logits;
    const int64_t V = model.config().n_vocab, T = static_cast<int64_t>(tokens.size());
    for (int64_t b = 0; b < T; b += chunk) {
      ForwardItem item;
      item.state = &state;
      item.tokens = std::span<const int32_t>(tokens).subspan(b, std::min(chunk, T - b));
      item.all_logits = true;
      item.mtp_logits = mtp;
      model.forward(std::span(&item, 1));
      logits.insert(logits.end(), item.logits.begin(), item.logits.end());
      if (mtp) {
        // Rows from mtp_first_position on replace earlier drafts.
        mtp_logits.resize(static_cast<size_t>(item.mtp_first_position * V));
        mtp_logits.insert(mtp_logits.end(), item.mtp.begin(), item.mtp.end());
      }
    }
    return {logits, mtp_logits};
  }

  static gguf::GgufFile* f32_;
  static gguf::GgufFile* q2_;
  static gguf::GgufFile* q4_;
};
gguf::GgufFile* CpuModelTest::f32_ = nullptr;
gguf::GgufFile* CpuModelTest::q2_ = nullptr;
gguf::GgufFile* CpuModelTest::q4_ = nullptr;

TEST_F(CpuModelTest, ChunkedPrefillEqualsTokenByToken) {
  CpuModel model(*f32_, {});
  const int64_t V = model.config().n_vocab;
  std::vector<int32_t> tokens = random_tokens(150, 1);
  auto [one, one_mtp] = run(model, tokens, 1, true);
  ASSERT_EQ(one.size(), 150u * V);
  ASSERT_EQ(one_mtp.size(), 150u * V);
  for (int64_t chunk : {3, 64, 150}) {
    SCOPED_TRACE(chunk);
    auto [logits, mtp] = run(model, tokens, chunk, true);
    EXPECT_LE(relative_difference(logits, one, V), 1e-5);
    EXPECT_LE(relative_difference(mtp, one_mtp, V), 1e-5);
  }
}

TEST_F(CpuModelTest, StateEventsHappen) {
  CpuModel model(*f32_, {});
  const model::ModelConfig& c = model.config();
  const int64_t T = 300;
  SequenceState state = model.new_sequence(false);
  std::vector<int32_t> tokens = random_tokens(T, 2);
  ForwardItem item = make_item(&state, tokens);
  model.forward(std::span(&item, 1));
  EXPECT_EQ(state.position, T);
  // Every position past the window overwrote a ring slot.
  EXPECT_EQ(state.counters.window_wraps, T - c.sliding_window);
  for (uint32_t l = 0; l < c.n_layer; ++l) {
    int64_t expected = c.ratio(l) == 0 ? 0 : T / c.ratio(l);
    EXPECT_EQ(state.counters.rows_emitted[l], expected) << "layer " << l;
  }
  EXPECT_GT(state.counters.rows_emitted[2], 0) << "ratio-128 rows emitted";
  // Queries see floor((t+1)/4) indexer rows; top-k drops rows once that exceeds top_k, for
  // every such query of each ratio-4 layer.
  int64_t partial = 0;
  for (int64_t t = 0; t < T; ++t) partial += (t + 1) / 4 > c.indexer_top_k;
  int64_t ratio4_layers = 0;
  for (uint32_t l = 0; l < c.n_layer; ++l) ratio4_layers += c.ratio(l) == 4;
  EXPECT_EQ(state.counters.indexer_partial_selections, partial * ratio4_layers);
  EXPECT_GT(partial, 0);
}

TEST_F(CpuModelTest, BatchedDecodeEqualsDecodingAlone) {
  CpuModel model(*f32_, {});
  const int64_t V = model.config().n_vocab;
  const std::vector<int64_t> prompt_lengths = {5, 17, 40};
  std::vector<std::vector<int32_t>> seqs;
  for (size_t i = 0; i < prompt_lengths.size(); ++i) seqs.push_back(random_tokens(44, 10 + i));
  // Alone: each sequence prefilled, then decoded token by token.
  std::vector<std::vector<float>> alone(seqs.size());
  for (size_t i = 0; i < seqs.size(); ++i) {
    SequenceState s = model.new_sequence(true);
    ForwardItem prefill = make_item(&s, std::span<const int32_t>(seqs[i]).first(prompt_lengths[i]));
    model.forward(std::span(&prefill, 1));
    for (int64_t p = prompt_lengths[i]; p < prompt_lengths[i] + 4; ++p) {
      ForwardItem step = make_item(&s, std::span<const int32_t>(seqs[i]).subspan(p, 1));
      step.mtp_logits = true;
      model.forward(std::span(&step, 1));
      alone[i].insert(alone[i].end(), step.logits.begin(), step.logits.end());
      alone[i].insert(alone[i].end(), step.mtp.end() - V, step.mtp.end());
    }
  }
  // Batched: the same decode steps, three sequences per forward call.
  std::vector<SequenceState> states;
  for (size_t i = 0; i < seqs.size(); ++i) {
    states.push_back(model.new_sequence(true));
    ForwardItem prefill =
        make_item(&states[i], std::span<const int32_t>(seqs[i]).first(prompt_lengths[i]));
    model.forward(std::span(&prefill, 1));
  }
  std::vector<std::vector<float>> batched(seqs.size());
  for (int64_t step = 0; step < 4; ++step) {
    std::vector<ForwardItem> items;
    for (size_t i = 0; i < seqs.size(); ++i) {
      ForwardItem it = make_item(
          &states[i], std::span<const int32_t>(seqs[i]).subspan(prompt_lengths[i] + step, 1));
      it.mtp_logits = true;
      items.push_back(it);
    }
    model.forward(items);
    for (size_t i = 0; i < seqs.size(); ++i) {
      batched[i].insert(batched[i].end(), items[i].logits.begin(), items[i].logits.end());
      batched[i].insert(batched[i].end(), items[i].mtp.end() - V, items[i].mtp.end());
    }
  }
  for (size_t i = 0; i < seqs.size(); ++i) {
    EXPECT_LE(relative_difference(batched[i], alone[i], V), 1e-6) << "sequence " << i;
  }
}

TEST_F(CpuModelTest, SnapshotRestoreContinues) {
  CpuModel model(*f32_, {});
  std::vector<int32_t> tokens = random_tokens(60, 3);
  SequenceState s = model.new_sequence(true);
  ForwardItem a = make_item(&s, std::span<const int32_t>(tokens).first(40));
  model.forward(std::span(&a, 1));
  SequenceState snapshot = s;
  ForwardItem b = make_item(&s, std::span<const int32_t>(tokens).subspan(40));
  model.forward(std::span(&b, 1));
  s = snapshot;
  ForwardItem again = make_item(&s, std::span<const int32_t>(tokens).subspan(40));
  model.forward(std::span(&again, 1));
  EXPECT_EQ(again.logits, b.logits);
}

// Per-position relative RMS error ||b − a|| / ||a|| of logits, and the correlation of b with a.
struct Agreement {
  double mean_rms = 0, max_rms = 0, min_correlation = 1;
};

Agreement agreement(const std::vector<float>& a, const std::vector<float>& b, int64_t V) {
  Agreement g;
  const size_t rows = a.size() / V;
  for (size_t r = 0; r < rows; ++r) {
    const float* x = a.data() + r * V;
    const float* y = b.data() + r * V;
    double sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0, err = 0;
    for (int64_t i = 0; i < V; ++i) {
      sx += x[i], sy += y[i], sxx += x[i] * double(x[i]), syy += y[i] * double(y[i]);
      sxy += x[i] * double(y[i]), err += (y[i] - double(x[i])) * (y[i] - double(x[i]));
    }
    double rms = std::sqrt(err / sxx);
    double corr = (sxy - sx * sy / V) / std::sqrt((sxx - sx * sx / V) * (syy - sy * sy / V));
    g.mean_rms += rms / rows;
    g.max_rms = std::max(g.max_rms, rms);
    g.min_correlation = std::min(g.min_correlation, corr);
  }
  return g;
}

// A quantized tiny model holds its f32 twin's weights up to quantization error, and its logits
// follow with an error of the same order as the weight error of its routed experts, which carry
// most of the computation: ~0.07 relative for Q4_K, ~0.30–0.35 for the 2-bit IQ2_XXS/Q2_K mix
// (tests/synth measures those). Measured over 40 positions (seed 7, tokens seed 4): q4 0.093 mean,
// 0.237 max relative RMS error, correlation ≥ 0.972; q2 0.311 mean, 0.455 max, correlation
// ≥ 0.897 (other seeds: within ±0.05). The bounds leave ~25% headroom.
// Unrelated weights would give an error of ~1.4 and no correlation.
TEST_F(CpuModelTest, QuantizedModelsTrackTheirFloatTwin) {
  CpuModel f32(*f32_, {}), q2(*q2_, {}), q4(*q4_, {});
  const int64_t V = f32.config().n_vocab;
  std::vector<int32_t> tokens = random_tokens(40, 4);
  std::vector<float> ref = run(f32, tokens, 40, false).first;
  Agreement g2 = agreement(ref, run(q2, tokens, 40, false).first, V);
  Agreement g4 = agreement(ref, run(q4, tokens, 40, false).first, V);
  std::printf("  q2: mean %.3f max %.3f corr %.3f; q4: mean %.3f max %.3f corr %.3f\n", g2.mean_rms,
              g2.max_rms, g2.min_correlation, g4.mean_rms, g4.max_rms, g4.min_correlation);
  EXPECT_LE(g4.mean_rms, 0.13);
  EXPECT_LE(g4.max_rms, 0.30);
  EXPECT_GE(g4.min_correlation, 0.95);
  EXPECT_LE(g2.mean_rms, 0.40);
  EXPECT_LE(g2.max_rms, 0.58);
  EXPECT_GE(g2.min_correlation, 0.85);
  EXPECT_LT(g4.mean_rms, g2.mean_rms) << "4-bit experts must track more closely than 2-bit";
}

TEST_F(CpuModelTest, RejectsBadInputs) {
  CpuModel model(*f32_, {});
  SequenceState s = model.new_sequence(false);
  std::vector<int32_t> bad = {1, 129280};
  ForwardItem item = make_item(&s, bad);
  EXPECT_THROW(model.forward(std::span(&item, 1)), std::invalid_argument);
  std::vector<int32_t> ok = {1};
  ForwardItem mtp = make_item(&s, ok);
  mtp.mtp_logits = true;
  EXPECT_THROW(model.forward(std::span(&mtp, 1)), std::invalid_argument) << "no MTP state";
}

// Weight binding refuses a file whose tensors do not match its hyperparameters, naming the tensor.
TEST(CpuModelBinding, NamesTheBadTensor) {
  synth::SynthOptions o;
  o.preset = *synth::preset_by_name("tiny");
  o.preset.mix = synth::QuantMix::kF32;
  synth::SynthPlan plan =
      synth::plan_synthetic_model(o, synth::load_deepseek_v4_vocab(synth::find_tokenizer_dir()));
  // blk.1.attn_kv.weight declared one row short.
  auto it = std::find_if(plan.specs.begin(), plan.specs.end(), [](const gguf::TensorSpec& t) {
    return t.name == "blk.1.attn_kv.weight";
  });
  ASSERT_NE(it, plan.specs.end());
  it->ne[1] -= 1;
  fs::path path = testing::scratch_dir("cpu_model") / "bad-shape.gguf";
  {
    gguf::GgufWriter w(path, plan.metadata, plan.specs);
    for (size_t i = 0; i < w.tensors().size(); ++i) {
      w.write(i, 0, std::vector<uint8_t>(w.tensors()[i].size, 0));
    }
    w.commit();
  }
  gguf::GgufFile file = gguf::GgufFile::open(path);
  try {
    CpuModel model(file, {});
    ADD_FAILURE() << "bound a mis-shaped model";
  } catch (const model::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("shape blk.1.attn_kv.weight (shape [256, 127], expected "
                                         "[256, 128])"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace magnetar::cpu
