// The CUDA backend against the CPU reference backend on the tiny synthetic models (every layer
// kind: window-only, ratio 4 with indexer, ratio 128, hash routing): logits close, greedy
// continuations identical, chunked prefill and batches bit-identical to token-by-token decoding,
// state export/import exact and interchangeable with the CPU, bad requests refused without
// changing anything, and the expert cache giving the resident model's bits. Needs a CUDA GPU.
//
// The models come from MAGNETAR_TINY_Q2 / _Q4 / _F32 when set (tests/gpu/run.sh writes
// them), else they are synthesized into the test's scratch directory.
#include "backend/cuda/cuda_backend.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/device_weights.h"
#include "engine/engine.h"
#include "logit_agreement.h"
#include "tiny_model.h"

namespace magnetar::gpu {
namespace {

using testing::random_tokens;

// How close GPU logits are to the CPU's, per position: max|a − b| / max|b|.
//
// The matrix products are bit-identical and every other operation keeps the CPU's order; what
// differs is the last bit of an exp/log1p/cos/sin now and then (the host library is not always
// correctly rounded; the GPU computes them in double and rounds once) and of a double-precision
// sum of squares. With plain numerics such a bit moves the logits by ~1e-7 relative (measured on
// an H100: 5.6e-7 at worst over 150 positions, f32 and q2), so 1e-5 is the bound.
//
// The official numerics round activations to FP8/FP4 grids about ten times per layer. A last-bit
// difference in front of a rounding moves the value to the neighbouring code now and then (one
// element changing by up to 1/8 of its size), and that can change a discrete choice further on:
// an expert of the router's top-k, a row of the indexer's top-k. Such a choice changes that
// position's hidden state a lot, and through the rows it leaves in the sequence state, the
// positions after it. Measured on an H100 over 150 positions: f32 bit-identical at the median,
// 6e-5 at worst; q2 bit-identical up to one such event (position 81), after which the positions
// differ by up to 0.2 (same top-1 at 94% of positions, mean KL 1e-3 nats). From the CPU's state at
// every step, q2 and q4 are bit-identical at the median and within 1e-3 at 149 of 150 steps. So a
// whole-sequence comparison under the official numerics can only be statistical (cuda-design.md
// §8.2), and the per-token accuracy is checked from the CPU's own state at every step
// (OfficialStepsFromCpuStates), where no event carries over. A real error (a wrong row, a wrong
// position) fails every bound.
constexpr double kPlainTolerance = 1e-5;
constexpr double kOfficialMedian = 1e-4;
constexpr double kOfficialTop1 = 0.9;     // share of positions with the same argmax
constexpr double kOfficialMeanKl = 1e-2;  // nats
// Steps from the CPU's state: almost every step within 1e-3, the same top-1 almost everywhere.
constexpr double kStepWithin1e3 = 0.97;
constexpr double kStepTop1 = 0.97;

int32_t argmax(std::span<const float> v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

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

// `n` greedy tokens after `sequence`'s last logits `last`.
std::vector<int32_t> greedy(backend::Backend& b, backend::Sequence& sequence,
                            std::vector<float> last, int n) {
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    out.push_back(argmax(last));
    backend::ForwardItem item;
    item.sequence = &sequence;
    item.tokens = std::span(&out.back(), 1);
    b.forward(std::span(&item, 1));
    last = std::move(item.logits);
  }
  return out;
}

std::vector<float> prefill(backend::Backend& b, backend::Sequence& s,
                           std::span<const int32_t> tokens) {
  backend::ForwardItem item;
  item.sequence = &s;
  item.tokens = tokens;
  b.forward(std::span(&item, 1));
  return item.logits;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::bit_cast<uint32_t>(a[i]) != std::bit_cast<uint32_t>(b[i])) return false;
  }
  return true;
}

void expect_compressor_equal(const std::optional<cpu::CompressorState>& a,
                             const std::optional<cpu::CompressorState>& b,
                             const std::string& where) {
  ASSERT_EQ(a.has_value(), b.has_value()) << where;
  if (!a) return;
  EXPECT_EQ(a->ratio, b->ratio) << where;
  EXPECT_TRUE(same_bits(a->kv, b->kv)) << where << " kv";
  EXPECT_TRUE(same_bits(a->score, b->score)) << where << " score";
  EXPECT_TRUE(same_bits(a->prev_kv, b->prev_kv)) << where << " prev_kv";
  EXPECT_TRUE(same_bits(a->prev_score, b->prev_score)) << where << " prev_score";
  EXPECT_TRUE(same_bits(a->rows, b->rows)) << where << " rows";
}

void expect_states_equal(const cpu::SequenceState& a, const cpu::SequenceState& b) {
  EXPECT_EQ(a.position, b.position);
  EXPECT_EQ(a.counters.window_wraps, b.counters.window_wraps);
  EXPECT_EQ(a.counters.rows_emitted, b.counters.rows_emitted);
  EXPECT_EQ(a.counters.indexer_partial_selections, b.counters.indexer_partial_selections);
  ASSERT_EQ(a.layers.size(), b.layers.size());
  for (size_t l = 0; l < a.layers.size(); ++l) {
    const std::string where = "layer " + std::to_string(l);
    EXPECT_TRUE(same_bits(a.layers[l].window, b.layers[l].window)) << where << " window";
    expect_compressor_equal(a.layers[l].compressor, b.layers[l].compressor, where + " compressor");
    expect_compressor_equal(a.layers[l].indexer, b.layers[l].indexer, where + " indexer");
  }
  EXPECT_EQ(a.mtp.has_value(), b.mtp.has_value());
}

// Share of equal elements, the largest difference relative to the largest magnitude, and the
// relative RMS difference ‖a − b‖ / ‖b‖ (finite values).
struct Closeness {
  double equal = 1;
  double relative = 0;
  double rms = 0;
};
Closeness closeness(const std::vector<float>& a, const std::vector<float>& b) {
  Closeness c;
  if (a.empty()) return c;
  size_t equal = 0;
  double diff = 0, mag = 0, sq_diff = 0, sq = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    equal += a[i] == b[i];
    if (std::isfinite(b[i])) {
      const double d = double(a[i]) - b[i];
      diff = std::max(diff, std::abs(d));
      mag = std::max(mag, std::abs(double(b[i])));
      sq_diff += d * d;
      sq += double(b[i]) * b[i];
    }
  }
  c.equal = double(equal) / a.size();
  c.relative = mag > 0 ? diff / mag : diff;
  c.rms = sq > 0 ? std::sqrt(sq_diff / sq) : std::sqrt(sq_diff);
  return c;
}

class CudaBackendTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!cuda_backend_usable()) return;
    f32_ = new gguf::GgufFile(gguf::GgufFile::open(tiny_model_path("f32")));
    q2_ = new gguf::GgufFile(gguf::GgufFile::open(tiny_model_path("q2")));
    q4_ = new gguf::GgufFile(gguf::GgufFile::open(tiny_model_path("q4")));
  }
  static void TearDownTestSuite() {
    delete f32_;
    delete q2_;
    delete q4_;
    f32_ = q2_ = q4_ = nullptr;
  }
  void SetUp() override {
    if (!cuda_backend_usable()) GTEST_SKIP() << "no usable CUDA device";
  }

  static const gguf::GgufFile& file(const std::string& types) {
    return types == "q2" ? *q2_ : types == "q4" ? *q4_ : *f32_;
  }
  static std::unique_ptr<CudaBackend> cuda(const std::string& types, bool official = true,
                                           int64_t context = 4096, size_t gpu_mem = 0) {
    CudaOptions o;
    o.context = context;
    o.official_numerics = official;
    o.gpu_mem = gpu_mem;
    o.progress = false;
    o.reference_order = true;  // the bounds above are for the CPU's summation order
    return std::make_unique<CudaBackend>(file(types), o);
  }
  static std::unique_ptr<cpu::CpuBackend> cpu(const std::string& types, bool official = true) {
    cpu::CpuOptions o;
    o.official_numerics = official;
    return std::make_unique<cpu::CpuBackend>(file(types), o);
  }

  static gguf::GgufFile* f32_;
  static gguf::GgufFile* q2_;
  static gguf::GgufFile* q4_;
};
gguf::GgufFile* CudaBackendTest::f32_ = nullptr;
gguf::GgufFile* CudaBackendTest::q2_ = nullptr;
gguf::GgufFile* CudaBackendTest::q4_ = nullptr;

// 150 positions: past the 8-row window, the indexer choosing 8 of up to 37 rows, and a ratio-128
// row.
TEST_F(CudaBackendTest, LogitsCloseToCpu) {
  for (const std::string types : {"f32", "q2", "q4"}) {
    for (bool official : {true, false}) {
      // q4's official numerics are checked step by step only (OfficialStepsFromCpuStates): one
      // whole-sequence prompt may or may not meet a rounding event early, see above.
      if (types == "q4" && official) continue;
      SCOPED_TRACE(types + (official ? ", official" : ", plain"));
      auto g = cuda(types, official);
      auto c = cpu(types, official);
      const int64_t V = g->config().n_vocab;
      const std::vector<int32_t> tokens = random_tokens(150, 1);
      const std::vector<float> expected = chunked_logits(*c, tokens, 150);
      const std::vector<float> got = chunked_logits(*g, tokens, 150);
      ASSERT_EQ(got.size(), expected.size());
      const Agreement a = agreement(got, expected, V);
      size_t first_off = 0;
      while (first_off < a.relative.size() && a.relative[first_off] <= 1e-3) ++first_off;
      std::cout << "[ logits   ] " << types << (official ? " official" : " plain")
                << ", 150 positions, first beyond 1e-3: " << first_off
                << ", max|gpu - cpu| / max|cpu|: median " << a.quantile(0.5) << ", 90% "
                << a.quantile(0.9) << ", max " << a.quantile(1.0) << "; within 1e-3 "
                << a.share_within(1e-3) << ", same top-1 " << a.top1 << ", mean KL " << a.mean_kl
                << "\n";
      if (official) {
        EXPECT_LE(a.quantile(0.5), kOfficialMedian);
        EXPECT_GE(a.top1, kOfficialTop1);
        EXPECT_LE(a.mean_kl, kOfficialMeanKl);
      } else {
        EXPECT_LE(a.quantile(1.0), kPlainTolerance);
        EXPECT_EQ(a.top1, 1.0);
      }
    }
  }
}

// Every position computed from the CPU's own state: the GPU imports the CPU's state before each
// token, so each step's logits measure that step's arithmetic alone.
TEST_F(CudaBackendTest, OfficialStepsFromCpuStates) {
  for (const char* types : {"q2", "q4", "f32"}) {
    SCOPED_TRACE(types);
    auto g = cuda(types);
    auto c = cpu(types);
    const int64_t V = g->config().n_vocab;
    const std::vector<int32_t> tokens = random_tokens(150, 1);
    auto cs = c->new_sequence();
    std::vector<float> got, expected;
    for (size_t t = 0; t < tokens.size(); ++t) {
      auto gs = g->import_state(cs->export_state());
      const std::span<const int32_t> token = std::span<const int32_t>(tokens).subspan(t, 1);
      const std::vector<float> a = prefill(*g, *gs, token), b = prefill(*c, *cs, token);
      got.insert(got.end(), a.begin(), a.end());
      expected.insert(expected.end(), b.begin(), b.end());
    }
    const Agreement a = agreement(got, expected, V);
    std::cout << "[ logits   ] " << types << " official, 150 steps from CPU states: median "
              << a.quantile(0.5) << ", 90% " << a.quantile(0.9) << ", max " << a.quantile(1.0)
              << "; within 1e-3 " << a.share_within(1e-3) << ", same top-1 " << a.top1
              << ", mean KL " << a.mean_kl << "\n";
    EXPECT_LE(a.quantile(0.5), kOfficialMedian);
    EXPECT_GE(a.share_within(1e-3), kStepWithin1e3);
    EXPECT_GE(a.top1, kStepTop1);
  }
}

TEST_F(CudaBackendTest, GreedyContinuationMatchesCpu) {
  auto g = cuda("f32");
  auto c = cpu("f32");
  const std::vector<int32_t> prompt = random_tokens(16, 2);
  auto gs = g->new_sequence();
  auto cs = c->new_sequence();
  const std::vector<int32_t> want = greedy(*c, *cs, prefill(*c, *cs, prompt), 64);
  const std::vector<int32_t> got = greedy(*g, *gs, prefill(*g, *gs, prompt), 64);
  EXPECT_EQ(got, want);
}

// Chunked prefill is the same computation as token-by-token decoding, to the bit, for every
// chunk size (the matrix products sum in a fixed order whatever the token count).
TEST_F(CudaBackendTest, ChunkSizesGiveTheSameBits) {
  for (const char* types : {"f32", "q2"}) {
    SCOPED_TRACE(types);
    auto g = cuda(types);
    const std::vector<int32_t> tokens = random_tokens(150, 3);
    const std::vector<float> whole = chunked_logits(*g, tokens, 512);
    for (int64_t chunk : {1, 3, 16}) {
      SCOPED_TRACE(chunk);
      const std::vector<float> chunked = chunked_logits(*g, tokens, chunk);
      EXPECT_TRUE(same_bits(chunked, whole))
          << "max difference " << relative_difference(chunked, whole, g->config().n_vocab);
    }
  }
}

// Sequences of different lengths prefilled and decoded together give each one's bits alone.
TEST_F(CudaBackendTest, BatchesGiveTheSameBitsAsAlone) {
  auto g = cuda("q2");
  const std::vector<int64_t> lengths = {5, 17, 40, 131, 9};
  std::vector<std::vector<int32_t>> seqs;
  for (size_t i = 0; i < lengths.size(); ++i) seqs.push_back(random_tokens(lengths[i] + 3, 10 + i));
  // Alone: all logits of the prefill, then three decode steps.
  std::vector<std::vector<float>> alone(seqs.size());
  for (size_t i = 0; i < seqs.size(); ++i) {
    auto s = g->new_sequence();
    alone[i] =
        chunked_logits(*g, std::span<const int32_t>(seqs[i]).first(lengths[i]), 512, s.get());
    const std::vector<float> rest =
        chunked_logits(*g, std::span<const int32_t>(seqs[i]).subspan(lengths[i]), 1, s.get());
    alone[i].insert(alone[i].end(), rest.begin(), rest.end());
  }
  for (size_t batch : {size_t{2}, size_t{5}}) {
    SCOPED_TRACE(batch);
    std::vector<std::unique_ptr<backend::Sequence>> states;
    std::vector<std::vector<float>> got(batch);
    std::vector<backend::ForwardItem> items(batch);
    for (size_t i = 0; i < batch; ++i) {
      states.push_back(g->new_sequence());
      items[i].sequence = states[i].get();
      items[i].tokens = std::span<const int32_t>(seqs[i]).first(lengths[i]);
      items[i].all_logits = true;
    }
    g->forward(items);
    for (size_t i = 0; i < batch; ++i) got[i] = items[i].logits;
    for (int64_t step = 0; step < 3; ++step) {
      for (size_t i = 0; i < batch; ++i) {
        items[i].tokens = std::span<const int32_t>(seqs[i]).subspan(lengths[i] + step, 1);
      }
      g->forward(items);
      for (size_t i = 0; i < batch; ++i)
        got[i].insert(got[i].end(), items[i].logits.begin(), items[i].logits.end());
    }
    for (size_t i = 0; i < batch; ++i) EXPECT_TRUE(same_bits(got[i], alone[i])) << "sequence " << i;
  }
}

// A CPU state imported and exported again is bit-identical (session files move between
// backends); 137 positions cover every kind of state: a wrapped window, compressed rows of both
// ratios, indexer rows, partial blocks.
TEST_F(CudaBackendTest, ImportExportIsExact) {
  for (const char* types : {"f32", "q2"}) {
    SCOPED_TRACE(types);
    auto g = cuda(types);
    auto c = cpu(types);
    auto cs = c->new_sequence();
    prefill(*c, *cs, random_tokens(137, 4));
    const cpu::SequenceState state = cs->export_state();
    auto gs = g->import_state(state);
    EXPECT_EQ(gs->position(), 137);
    expect_states_equal(gs->export_state(), state);
  }
}

// The GPU's own state after 300 positions against the CPU's: the same counters, FP8/FP4-coded
// values on the same code almost everywhere, and float32 values (RoPE dims, compressor blocks)
// close. Measured on an H100 (the run is deterministic): every code equal but 16 of 4800 in
// layer 3's compressed rows and 2 of 9600 in its indexer rows; float values within a relative RMS
// of 1e-7 except in layer 3's compressed rows, pooled after such a code: 1.02e-3 (max 8e-3). Hence
// at least 97% equal codes and a relative RMS difference of the floats under 1e-2 (a wrong value
// anywhere would be O(1)).
TEST_F(CudaBackendTest, StateMatchesCpu) {
  auto g = cuda("f32");
  auto c = cpu("f32");
  const model::ModelConfig& config = g->config();
  const std::vector<int32_t> tokens = random_tokens(300, 5);
  auto gs = g->new_sequence();
  auto cs = c->new_sequence();
  prefill(*g, *gs, tokens);
  prefill(*c, *cs, tokens);
  const cpu::SequenceState a = gs->export_state(), b = cs->export_state();
  EXPECT_EQ(a.position, b.position);
  EXPECT_EQ(a.counters.window_wraps, b.counters.window_wraps);
  EXPECT_EQ(a.counters.rows_emitted, b.counters.rows_emitted);
  EXPECT_EQ(a.counters.indexer_partial_selections, b.counters.indexer_partial_selections);
  // Splits rows of `dims` values into their coded dims [0, coded) and float dims, and checks each.
  auto check_rows = [](const std::vector<float>& x, const std::vector<float>& y, size_t dims,
                       size_t coded, const std::string& what) {
    ASSERT_EQ(x.size(), y.size()) << what;
    std::vector<float> xc, yc, xf, yf;
    for (size_t i = 0; i < x.size(); ++i) {
      const bool is_coded = i % dims < coded;
      (is_coded ? xc : xf).push_back(x[i]);
      (is_coded ? yc : yf).push_back(y[i]);
    }
    const Closeness codes = closeness(xc, yc), floats = closeness(xf, yf);
    std::cout << "[ state    ] " << what << ": " << xc.size() << " coded values, "
              << codes.equal * 100 << "% equal (max relative difference " << codes.relative << "); "
              << xf.size() << " float values, relative RMS difference " << floats.rms << " (max "
              << floats.relative << ")\n";
    EXPECT_GE(codes.equal, 0.97) << what;
    EXPECT_LE(floats.rms, 1e-2) << what;
  };
  const size_t hd = config.head_dim, nope = hd - config.rope_dim, id = config.indexer_head_dim;
  for (size_t l = 0; l < b.layers.size(); ++l) {
    const std::string layer = "layer " + std::to_string(l);
    check_rows(a.layers[l].window, b.layers[l].window, hd, nope, layer + " window");
    if (b.layers[l].compressor) {
      check_rows(a.layers[l].compressor->rows, b.layers[l].compressor->rows, hd, nope,
                 layer + " compressed rows");
      check_rows(a.layers[l].compressor->kv, b.layers[l].compressor->kv, hd, 0,
                 layer + " compressor block");
    }
    if (b.layers[l].indexer) {
      check_rows(a.layers[l].indexer->rows, b.layers[l].indexer->rows, id, id,
                 layer + " indexer rows");
      check_rows(a.layers[l].indexer->kv, b.layers[l].indexer->kv, id, 0, layer + " indexer block");
    }
  }
}

// A short run through every kernel (both compressors, indexer scoring and top-k, sparse
// attention, routed and hash experts, batching), for compute-sanitizer (tests/gpu/run.sh): chunks
// and batches must agree, and every logit is finite.
TEST_F(CudaBackendTest, ShortWorkload) {
  auto g = cuda("q2");
  const std::vector<int32_t> tokens = random_tokens(140, 15);
  auto whole = g->new_sequence();
  const std::vector<float> last = prefill(*g, *whole, tokens);
  for (float v : last) ASSERT_TRUE(std::isfinite(v));
  auto a = g->new_sequence();
  auto b = g->new_sequence();
  std::vector<backend::ForwardItem> items(2);
  items[0].sequence = a.get();
  items[0].tokens = std::span<const int32_t>(tokens).first(70);
  items[1].sequence = b.get();
  items[1].tokens = std::span<const int32_t>(tokens).first(3);
  g->forward(items);
  items[0].tokens = std::span<const int32_t>(tokens).subspan(70);
  items[1].tokens = std::span<const int32_t>(tokens).subspan(3, 1);
  g->forward(items);
  EXPECT_TRUE(same_bits(items[0].logits, last));
  auto c = g->new_sequence();
  prefill(*g, *c, std::span<const int32_t>(tokens).first(3));
  EXPECT_TRUE(
      same_bits(items[1].logits, prefill(*g, *c, std::span<const int32_t>(tokens).subspan(3, 1))));
}

// Sessions move both ways: a prefix processed on one backend continues on the other exactly as it
// would have where it started (greedy tokens on the float32 model).
TEST_F(CudaBackendTest, StatesContinueAcrossBackends) {
  auto g = cuda("f32");
  auto c = cpu("f32");
  const std::vector<int32_t> prompt = random_tokens(40, 6);
  auto cs = c->new_sequence();
  const std::vector<float> cpu_last = prefill(*c, *cs, prompt);
  auto gs = g->new_sequence();
  const std::vector<float> gpu_last = prefill(*g, *gs, prompt);

  // CPU → CUDA.
  auto imported = g->import_state(cs->export_state());
  const std::vector<int32_t> on_gpu = greedy(*g, *imported, cpu_last, 24);
  // CUDA → CPU.
  auto back = c->import_state(gs->export_state());
  const std::vector<int32_t> on_cpu = greedy(*c, *back, gpu_last, 24);
  const std::vector<int32_t> cpu_alone = greedy(*c, *cs, cpu_last, 24);
  const std::vector<int32_t> gpu_alone = greedy(*g, *gs, gpu_last, 24);
  EXPECT_EQ(on_gpu, cpu_alone);
  EXPECT_EQ(on_cpu, gpu_alone);
  EXPECT_EQ(gpu_alone, cpu_alone);
}

TEST_F(CudaBackendTest, CloneIsASnapshot) {
  auto g = cuda("q2");
  const std::vector<int32_t> tokens = random_tokens(30, 7);
  auto s = g->new_sequence();
  prefill(*g, *s, std::span<const int32_t>(tokens).first(20));
  auto snapshot = s->clone();
  const cpu::SequenceState before = s->export_state();
  const std::vector<float> first = prefill(*g, *s, std::span<const int32_t>(tokens).subspan(20));
  EXPECT_EQ(snapshot->position(), 20);
  expect_states_equal(snapshot->export_state(), before);
  const std::vector<float> again =
      prefill(*g, *snapshot, std::span<const int32_t>(tokens).subspan(20));
  EXPECT_TRUE(same_bits(again, first));
}

// Bad requests throw std::invalid_argument before anything runs: every sequence of the call keeps
// its state.
TEST_F(CudaBackendTest, BadRequestsChangeNothing) {
  auto g = cuda("q2", true, 64);
  auto c = cpu("q2");
  const int32_t vocab = static_cast<int32_t>(g->config().n_vocab);
  auto a = g->new_sequence();
  auto b = g->new_sequence();
  const std::vector<int32_t> tokens = random_tokens(20, 8);
  prefill(*g, *a, tokens);
  prefill(*g, *b, std::span<const int32_t>(tokens).first(10));
  const cpu::SequenceState a_before = a->export_state(), b_before = b->export_state();

  const std::vector<int32_t> good = {1, 2, 3};
  auto cpu_sequence = c->new_sequence();
  const std::vector<int32_t> too_long(60, 7);  // 10 + 60 > 64
  for (const std::vector<int32_t>& bad : {std::vector<int32_t>{5, vocab}, std::vector<int32_t>{-1},
                                          std::vector<int32_t>{}, too_long}) {
    std::vector<backend::ForwardItem> items(2);
    items[0].sequence = a.get();
    items[0].tokens = good;
    items[1].sequence = b.get();
    items[1].tokens = bad;
    EXPECT_THROW(g->forward(items), std::invalid_argument) << bad.size() << " tokens";
  }
  {
    std::vector<backend::ForwardItem> items(2);
    items[0].sequence = a.get();
    items[0].tokens = good;
    items[1].sequence = cpu_sequence.get();
    items[1].tokens = good;
    EXPECT_THROW(g->forward(items), std::invalid_argument) << "a CPU sequence";
  }
  EXPECT_EQ(a->position(), 20);
  EXPECT_EQ(b->position(), 10);
  expect_states_equal(a->export_state(), a_before);
  expect_states_equal(b->export_state(), b_before);
}

TEST_F(CudaBackendTest, ContextLimitsSequences) {
  auto g = cuda("q2", true, 24);
  auto s = g->new_sequence();
  prefill(*g, *s, random_tokens(20, 9));
  std::vector<int32_t> five = random_tokens(5, 10);
  EXPECT_THROW(prefill(*g, *s, five), std::invalid_argument);
  EXPECT_EQ(s->position(), 20);
  prefill(*g, *s, std::span<const int32_t>(five).first(4));
  EXPECT_EQ(s->position(), 24);

  auto c = cpu("q2");
  auto cs = c->new_sequence();
  prefill(*c, *cs, random_tokens(30, 11));
  EXPECT_THROW(g->import_state(cs->export_state()), std::invalid_argument);
}

// A sequence reserved for the whole context holds what one that processed the whole context
// holds (the compressed rows of every layer at full capacity), more than a fresh one; the CPU
// backend cannot reserve ahead.
TEST_F(CudaBackendTest, ReserveTakesTheFullContextStorage) {
  for (const int64_t context : {int64_t{24}, int64_t{300}}) {
    auto g = cuda("q2", true, context);
    auto reserved = g->new_sequence();
    const size_t fresh = reserved->state_bytes();
    ASSERT_TRUE(reserved->reserve(context));
    auto full = g->new_sequence();
    for (int64_t done = 0; done < context; done += 7) {
      prefill(*g, *full, random_tokens(std::min<int64_t>(7, context - done), 40 + done));
    }
    ASSERT_EQ(full->position(), context);
    EXPECT_EQ(reserved->state_bytes(), full->state_bytes()) << "context " << context;
    EXPECT_GT(reserved->state_bytes(), fresh) << "context " << context;
    EXPECT_EQ(reserved->position(), 0);
  }
  auto c = cpu("q2");
  EXPECT_FALSE(c->new_sequence()->reserve(16));
}

// A state computed with plain numerics is not on the FP8/FP4 grid the official backend stores,
// so that backend refuses it; a plain backend keeps it exactly.
TEST_F(CudaBackendTest, PlainStatesNeedPlainBackend) {
  auto plain_cpu = cpu("q2", false);
  auto s = plain_cpu->new_sequence();
  prefill(*plain_cpu, *s, random_tokens(50, 12));
  const cpu::SequenceState state = s->export_state();
  EXPECT_THROW(cuda("q2", true)->import_state(state), std::invalid_argument);
  auto plain = cuda("q2", false);
  expect_states_equal(plain->import_state(state)->export_state(), state);
}

// States that do not fit the model are refused: MTP state for a model without the MTP block (or,
// for one with it, a pending final state of the wrong size), a state missing a layer.
TEST_F(CudaBackendTest, MismatchedStatesAreRefused) {
  auto c = cpu("q2");
  auto g = cuda("q2");
  cpu::SequenceState state = c->new_sequence()->export_state();
  state.mtp = state.layers[0];
  if (g->has_mtp()) state.mtp_pending_hidden.assign(3, 0.0f);
  EXPECT_THROW(g->import_state(state), std::invalid_argument);
  cpu::SequenceState wrong = c->new_sequence()->export_state();
  wrong.layers.pop_back();
  EXPECT_THROW(g->import_state(wrong), std::invalid_argument);
}

// With a weight budget below the model's size, routed experts are served from host memory
// through the expert cache: the same bits as with every expert resident.
TEST_F(CudaBackendTest, ExpertCacheGivesTheSameBits) {
  const model::ModelConfig config = model::ModelConfig::from_metadata(q2_->metadata());
  const WeightBytes sizes = weight_bytes(model::bind_weights(*q2_, config), config);
  auto resident = cuda("q2");
  ASSERT_EQ(resident->model().expert_cache(), nullptr);
  // Room for the other weights and about half the experts: at least one layer's, as required.
  auto spilled = cuda("q2", true, 4096, sizes.total - sizes.routed_experts / 2);
  const ExpertCache* cache = spilled->model().expert_cache();
  ASSERT_NE(cache, nullptr);
  EXPECT_LT(cache->slots(), int64_t{config.n_layer} * config.n_expert);
  const std::vector<int32_t> tokens = random_tokens(60, 13);
  EXPECT_TRUE(
      same_bits(chunked_logits(*spilled, tokens, 16), chunked_logits(*resident, tokens, 16)));
  EXPECT_TRUE(same_bits(chunked_logits(*spilled, tokens, 1), chunked_logits(*resident, tokens, 1)));
  EXPECT_GT(cache->misses(), cache->slots());  // experts were evicted and fetched again
  EXPECT_GT(cache->hits(), 0);
  std::cout << "[ experts  ] " << cache->slots() << " slots, " << cache->hits() << " hits, "
            << cache->misses()
            << " misses, pinned host memory: " << (cache->pinned() ? "yes" : "no") << "\n";
}

// The engine runs on the CUDA backend and its session files resume on the CPU and back.
TEST_F(CudaBackendTest, EngineSessionsMoveBetweenBackends) {
  const std::filesystem::path path = tiny_model_path("f32");
  engine::EngineOptions o;
  o.model = path;
  o.context = 256;
  o.backend = "cuda";
  engine::Engine on_gpu(o);
  EXPECT_EQ(on_gpu.backend_name(), "cuda");
  o.backend = "cpu";
  engine::Engine on_cpu(o);
  const std::vector<int32_t> prompt = random_tokens(30, 14);

  auto g = on_gpu.new_session();
  g->set_tokens(prompt);
  engine::Session* gb[] = {g.get()};
  on_gpu.step(gb);
  auto c = on_cpu.new_session();
  c->load(g->save());
  EXPECT_EQ(c->tokens(), prompt);
  for (int i = 0; i < 8; ++i) {
    const int32_t next = argmax(g->logits());
    ASSERT_EQ(argmax(c->logits()), next) << "step " << i;
    g->append(next);
    c->append(next);
    engine::Session* cb[] = {c.get()};
    on_gpu.step(gb);
    on_cpu.step(cb);
  }
  auto back = on_gpu.new_session();
  back->load(c->save());
  engine::Session* bb[] = {back.get()};
  back->append(argmax(c->logits()));
  g->append(argmax(g->logits()));
  on_gpu.step(bb);
  on_gpu.step(gb);
  EXPECT_EQ(argmax(back->logits()), argmax(g->logits()));
}

}  // namespace
}  // namespace magnetar::gpu
