// The fast small kernels of the decode step (hyper-connections, RMSNorm, FP8/FP4 simulation, the
// attention rows, compressors, router, expert sum, gathers) against their reference twins, which
// keep the CPU's loops: the fast kernels promise the same bits for the same inputs (only the
// router's choice among NaN scores is left open), so every comparison here is bit for bit, over
// 1 to 512 tokens. The expert choice and the expert sum are also checked against host
// computations; the whole tiny model in the fast order against the CPU. Needs a CUDA GPU.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/attention.cuh"
#include "backend/cuda/compressor.cuh"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/device_array.h"
#include "backend/cuda/embedding.cuh"
#include "backend/cuda/hyper_connections.cuh"
#include "backend/cuda/linear.cuh"
#include "backend/cuda/moe.cuh"
#include "backend/cuda/numerics.cuh"
#include "logit_agreement.h"
#include "tiny_model.h"

namespace magnetar::gpu {
namespace {

#define REQUIRE_GPU() \
  if (!cuda_backend_usable()) GTEST_SKIP() << "no usable CUDA device"

constexpr int64_t kTokenCounts[] = {1, 2, 7, 64, 512};

// Runs f in the reference order (true) or the fast one, and waits for the device.
template <typename F>
void in_order(bool reference, F&& f) {
  set_reference_order(reference);
  f();
  set_reference_order(false);
  MAGNETAR_CUDA_CHECK(cudaDeviceSynchronize());
}

std::vector<float> gaussian(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// Index of the first element whose bits differ, or -1.
int64_t first_difference(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::bit_cast<uint32_t>(a[i]) != std::bit_cast<uint32_t>(b[i])) return int64_t(i);
  }
  return -1;
}

#define EXPECT_SAME_BITS(a, b) EXPECT_EQ(first_difference(a, b), -1)

// Rows whose values span many binades (so that FP8/FP4 blocks get different scales).
std::vector<float> spread_rows(size_t n, uint32_t seed) {
  std::vector<float> x = gaussian(n, seed, 2.0f);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::ldexp(x[i], int(i / 61 % 16) - 8);
  return x;
}

// RoPE frequencies theta^(-2j/dims) as the model's table has them, and positions up to 2^20 (large
// angles exercise the argument reduction of cos and sin).
std::vector<float> rope_freqs(int rope_dims) {
  std::vector<float> f(static_cast<size_t>(std::max(rope_dims / 2, 1)));
  for (size_t j = 0; j < f.size(); ++j)
    f[j] = float(std::pow(10000.0, -2.0 * double(j) / rope_dims));
  return f;
}
std::vector<int32_t> random_positions(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> pick(0, 1 << 20);
  std::vector<int32_t> p(static_cast<size_t>(n));
  for (int32_t& v : p) v = pick(rng);
  if (!p.empty()) p[0] = 0;  // the identity rotation
  return p;
}

TEST(CudaSmallKernelsTest, RmsNormFastIsTheReference) {
  REQUIRE_GPU();
  // 7168: Pro's width; 8200: past the fast kernel's registers (the reference in both orders).
  for (const int64_t dim : {4096, 1024, 512, 130, 7168, 8200}) {
    for (const int64_t rows : kTokenCounts) {
      for (const bool weighted : {true, false}) {
        SCOPED_TRACE("dim " + std::to_string(dim) + ", rows " + std::to_string(rows) +
                     (weighted ? ", weighted" : ""));
        const std::vector<float> x =
            gaussian(static_cast<size_t>(rows * dim), uint32_t(dim + rows), 3.0f);
        const std::vector<float> w = gaussian(static_cast<size_t>(dim), 7);
        DeviceArray<float> dx{std::span<const float>(x)}, dw{std::span<const float>(w)};
        DeviceArray<float> ref(x.size()), fast(x.size());
        const float* wp = weighted ? dw.data() : nullptr;
        in_order(true, [&] { rms_norm_rows_cuda(dx.data(), wp, ref.data(), rows, dim, 1e-6f, 0); });
        in_order(false,
                 [&] { rms_norm_rows_cuda(dx.data(), wp, fast.data(), rows, dim, 1e-6f, 0); });
        const std::vector<float> expected = ref.download();
        EXPECT_SAME_BITS(fast.download(), expected);
        // In place (y aliasing x) as well.
        in_order(false, [&] { rms_norm_rows_cuda(dx.data(), wp, dx.data(), rows, dim, 1e-6f, 0); });
        EXPECT_SAME_BITS(dx.download(), expected);
        // And against a double-precision host RMSNorm, a few ulp apart.
        double worst = 0;
        for (int64_t r = 0; r < rows; ++r) {
          double sq = 0;
          for (int64_t i = 0; i < dim; ++i) sq += double(x[r * dim + i]) * x[r * dim + i];
          const double inv = 1.0 / std::sqrt(sq / double(dim) + 1e-6);
          for (int64_t i = 0; i < dim; ++i) {
            const double want = x[r * dim + i] * inv * (weighted ? w[i] : 1.0);
            worst = std::max(
                worst, std::abs(expected[r * dim + i] - want) / std::max(1e-30, std::abs(want)));
          }
        }
        EXPECT_LE(worst, 1e-6);
      }
    }
  }
}

TEST(CudaSmallKernelsTest, SimulateFastIsTheReference) {
  REQUIRE_GPU();
  for (const bool fp8 : {true, false}) {
    for (const int64_t block : {128, 32, 256, 300}) {  // 300: the reference kernel in both orders
      for (const int64_t cols : {4096, 1000}) {
        for (const int64_t rows : kTokenCounts) {
          SCOPED_TRACE(std::string(fp8 ? "fp8" : "fp4") + ", block " + std::to_string(block) +
                       ", cols " + std::to_string(cols) + ", rows " + std::to_string(rows));
          // Magnitudes over many binades, so that blocks get different scales.
          std::vector<float> x = gaussian(static_cast<size_t>(rows * cols), uint32_t(cols + rows));
          for (size_t i = 0; i < x.size(); ++i) x[i] = std::ldexp(x[i], int(i / 97 % 20) - 10);
          auto run = [&](bool reference) {
            DeviceArray<float> d{std::span<const float>(x)};
            in_order(reference, [&] {
              if (fp8) {
                fp8_simulate_rows_cuda(d.data(), rows, cols, block, 0);
              } else {
                fp4_simulate_rows_cuda(d.data(), rows, cols, block, 0);
              }
            });
            return d.download();
          };
          const std::vector<float> ref = run(true);
          EXPECT_SAME_BITS(run(false), ref);
          EXPECT_GT(first_difference(ref, x), -1);  // the rounding did something
        }
      }
    }
  }
}

// The per-token rows of attention (attention.cuh: query heads, KV rows, indexer queries): the fast
// launch against the reference kernels at Flash's shapes (64 heads of 512 with 64 RoPE dims; the
// indexer's 64 heads of 128) and at odd ones (rows not a multiple of the block, odd RoPE widths,
// the largest fast rows, indexer heads the fast kernel leaves to the reference one).
TEST(CudaSmallKernelsTest, TokenRowsFastAreTheReference) {
  REQUIRE_GPU();
  struct Shape {
    int heads, head_dim, rope, index_heads, index_dim;  // index_heads 0: no indexer
  };
  for (const Shape s :
       {Shape{64, 512, 64, 64, 128}, Shape{3, 200, 10, 2, 32}, Shape{2, 130, 7, 3, 64},
        Shape{1, 1024, 128, 1, 128}, Shape{5, 96, 96, 0, 0}, Shape{2, 512, 64, 2, 256},
        Shape{4, 64, 0, 4, 64}}) {
    for (const bool official : {true, false}) {
      for (const int64_t T : {1, 2, 7}) {
        SCOPED_TRACE(std::to_string(s.heads) + " heads of " + std::to_string(s.head_dim) +
                     ", rope " + std::to_string(s.rope) + ", indexer " +
                     std::to_string(s.index_heads) + " x " + std::to_string(s.index_dim) +
                     (official ? ", official" : ", plain") + ", tokens " + std::to_string(T));
        const uint32_t seed = uint32_t(s.head_dim * 5 + s.index_dim + T);
        const RowCodec codec = kv_row_codec(s.head_dim, s.rope, official);
        const std::vector<float> q =
            spread_rows(static_cast<size_t>(T * s.heads * s.head_dim), seed);
        const std::vector<float> kv = spread_rows(static_cast<size_t>(T * s.head_dim), seed + 1);
        const std::vector<float> iq =
            spread_rows(static_cast<size_t>(T * s.index_heads * s.index_dim), seed + 2);
        const std::vector<float> norm = gaussian(static_cast<size_t>(s.head_dim), seed + 3);
        const std::vector<float> freqs = rope_freqs(s.rope);
        const std::vector<int32_t> pos = random_positions(T, seed + 4);
        DeviceArray<float> dnorm{std::span<const float>(norm)},
            dfreqs{std::span<const float>(freqs)};
        DeviceArray<int32_t> dpos{std::span<const int32_t>(pos)};
        const std::vector<uint8_t> junk(static_cast<size_t>(T * codec.row_bytes()), 0xa5);
        struct Out {
          std::vector<float> q;
          std::vector<uint8_t> rows;
          std::vector<float> iq;
        };
        auto run = [&](bool reference) {
          DeviceArray<float> dq{std::span<const float>(q)}, dkv{std::span<const float>(kv)},
              diq{std::span<const float>(iq)};
          DeviceArray<uint8_t> drows{std::span<const uint8_t>(junk)};
          TokenRows r;
          r.positions = dpos.data();
          r.n_tokens = T;
          r.rope_freqs = dfreqs.data();
          r.rope_dims = s.rope;
          r.eps = 1e-6f;
          r.q = dq.data();
          r.heads = s.heads;
          r.head_dim = s.head_dim;
          r.kv = dkv.data();
          r.kv_norm = dnorm.data();
          r.codec = codec;
          r.kv_rows = drows.data();
          if (s.index_heads > 0) {
            r.index_q = diq.data();
            r.index_heads = s.index_heads;
            r.index_dim = s.index_dim;
            r.official = official;
          }
          in_order(reference, [&] { token_rows_cuda(r, 0); });
          return Out{dq.download(), drows.download(), diq.download()};
        };
        const Out ref = run(true);
        const Out fast = run(false);
        EXPECT_SAME_BITS(fast.q, ref.q);
        EXPECT_EQ(fast.rows, ref.rows);
        EXPECT_SAME_BITS(fast.iq, ref.iq);
        // The reference did its work: new queries, rows of a normalized vector, no junk padding.
        EXPECT_GT(first_difference(ref.q, q), -1);
        if (s.index_heads > 0) {
          EXPECT_GT(first_difference(ref.iq, iq), -1);
        }
        for (int64_t t = 0; t < T; ++t) {
          const uint8_t* row = ref.rows.data() + t * codec.row_bytes();
          double sq = 0;
          for (int d = 0; d < s.head_dim; ++d)
            sq += double(codec.value(row, d)) * codec.value(row, d);
          EXPECT_GT(sq, 0.0);
          for (int i = codec.code_bytes() + codec.n_blocks(); i < codec.float_offset(); ++i) {
            EXPECT_EQ(row[i], 0);
          }
        }
      }
    }
  }
}

// The compressors (compressor.cuh): the fast emit and store kernels, with the position bias added
// as they read the scores, against the bias launch and the reference kernels, on KV rows (ratio 4
// with overlapping blocks and ratio 128), indexer rows (Hadamard, FP4) and odd widths; decode steps
// that do and do not complete a block, chunks completing many blocks, and the sequence's start
// (block −1 with the fresh state's −inf scores). Rows and block buffers must match bit for bit.
TEST(CudaSmallKernelsTest, CompressorFastIsTheReference) {
  REQUIRE_GPU();
  struct Case {
    int ratio, head_width, rope;
    bool hadamard, official;
  };
  struct Span {
    int64_t first, n;
  };
  for (const Case k :
       {Case{4, 512, 64, false, true}, Case{4, 512, 64, false, false}, Case{4, 128, 64, true, true},
        Case{4, 128, 64, true, false}, Case{128, 512, 64, false, true},
        Case{4, 200, 10, false, true}, Case{128, 96, 6, false, false}, Case{4, 64, 8, true, true},
        Case{4, 512, 64, true, true}}) {
    const int buffers = k.ratio == 4 ? 2 : 1;
    const int width = k.ratio == 4 ? 2 * k.head_width : k.head_width;
    const RowCodec codec = k.hadamard ? indexer_row_codec(k.head_width, k.official)
                                      : kv_row_codec(k.head_width, k.rope, k.official);
    const std::vector<Span> spans =
        k.ratio == 4 ? std::vector<Span>{{511, 1}, {512, 1}, {3, 1}, {0, 1}, {0, 9}, {5, 37}}
                     : std::vector<Span>{{127, 1}, {128, 1}, {255, 1}, {0, 300}, {250, 10}};
    for (const Span span : spans) {
      SCOPED_TRACE("ratio " + std::to_string(k.ratio) + ", width " + std::to_string(k.head_width) +
                   (k.hadamard ? ", indexer" : ", kv") + (k.official ? ", official" : ", plain") +
                   ", tokens " + std::to_string(span.first) + " + " + std::to_string(span.n));
      const uint32_t seed = uint32_t(k.ratio * 7 + k.head_width + span.first * 3 + span.n);
      const size_t block_floats = size_t(buffers) * k.ratio * width;
      const std::vector<float> state_kv = gaussian(block_floats, seed);
      std::vector<float> state_score = gaussian(block_floats, seed + 1);
      if (span.first == 0 && k.ratio == 4) {  // a fresh state: block −1 cannot win
        std::fill(state_score.begin() + k.ratio * width, state_score.end(), -INFINITY);
      }
      const size_t chunk_floats = static_cast<size_t>(span.n * width);
      const std::vector<float> kv = spread_rows(chunk_floats, seed + 2);
      const std::vector<float> score = gaussian(chunk_floats, seed + 3, 2.0f);
      const std::vector<float> ape = gaussian(size_t(k.ratio) * width, seed + 4, 0.5f);
      const std::vector<float> norm = gaussian(size_t(k.head_width), seed + 5);
      const std::vector<float> freqs = rope_freqs(k.rope);
      DeviceArray<float> dkv{std::span<const float>(kv)}, dape{std::span<const float>(ape)},
          dnorm{std::span<const float>(norm)}, dfreqs{std::span<const float>(freqs)};
      const int64_t capacity = (span.first + span.n) / k.ratio + 1;
      const std::vector<uint8_t> junk(static_cast<size_t>(capacity * codec.row_bytes()), 0xa5);
      struct Out {
        std::vector<uint8_t> rows;
        std::vector<float> kv, score;
      };
      auto run = [&](bool reference) {
        DeviceCompressorState st;
        st.ratio = uint32_t(k.ratio);
        st.width = uint32_t(width);
        st.head_width = uint32_t(k.head_width);
        st.kv = DeviceArray<float>(std::span<const float>(state_kv));
        st.score = DeviceArray<float>(std::span<const float>(state_score));
        st.rows = DeviceArray<uint8_t>(std::span<const uint8_t>(junk));
        st.row_capacity = capacity;
        DeviceArray<float> dscore{std::span<const float>(score)};
        CompressorChunk c;
        c.state = &st;
        c.codec = codec;
        c.kv = dkv.data();
        c.score = dscore.data();
        c.ape = dape.data();
        c.norm = dnorm.data();
        c.rope_freqs = dfreqs.data();
        c.rope_dims = k.rope;
        c.eps = 1e-6f;
        c.hadamard = k.hadamard;
        c.first = span.first;
        c.n_tokens = span.n;
        in_order(reference, [&] { compressor_chunk_cuda(c, 0); });
        return Out{st.rows.download(), st.kv.download(), st.score.download()};
      };
      const Out ref = run(true);
      const Out fast = run(false);
      EXPECT_EQ(fast.rows, ref.rows);
      EXPECT_SAME_BITS(fast.kv, ref.kv);
      EXPECT_SAME_BITS(fast.score, ref.score);
      const int64_t emitted = (span.first + span.n) / k.ratio - span.first / k.ratio;
      EXPECT_EQ(ref.rows != junk, emitted > 0);
      EXPECT_GT(first_difference(ref.score, state_score), -1);  // the chunk stored its tokens
    }
  }
}

// A hyper-connection's weights whose mixer product is exact in any summation order (entries k/8
// with |k| <= 1 against states j/16 with |j| <= 32: every partial sum is a multiple of 2^-7 below
// 2^17), so that the fast GEMV and the reference one give the same mixer and the comparison
// isolates the kernels of this file.
struct TestHc {
  model::ModelConfig config;
  std::vector<float> fn_host, scale_host, base_host;
  DeviceArray<float> fn, scale, base;
  DeviceHyperConnection weights;

  TestHc(int64_t dim, int hc, int rows, uint32_t seed) {
    config.n_embd = uint32_t(dim);
    config.hc_count = uint32_t(hc);
    const int64_t cols = config.hc_count * dim;
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int> pick(-40, 40);
    fn_host.resize(static_cast<size_t>(rows * cols));
    for (float& v : fn_host) {
      const int k = pick(rng);
      v = k == -40 ? -0.125f : k == 40 ? 0.125f : 0.0f;
    }
    scale_host = gaussian(3, seed + 1, 0.5f);
    base_host = gaussian(static_cast<size_t>(rows), seed + 2, 0.5f);
    fn = DeviceArray<float>(std::span<const float>(fn_host));
    scale = DeviceArray<float>(std::span<const float>(scale_host));
    base = DeviceArray<float>(std::span<const float>(base_host));
    weights.fn.name = "hc_fn";
    weights.fn.type = quant::GgmlType::kF32;
    weights.fn.data = reinterpret_cast<const uint8_t*>(fn.data());
    weights.fn.cols = cols;
    weights.fn.rows = rows;
    weights.fn.row_bytes = cols * int64_t(sizeof(float));
    weights.scale = scale.data();
    weights.base = base.data();
  }
};

// States j/16, |j| <= 32 (see TestHc).
std::vector<float> coarse_states(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> pick(-32, 32);
  std::vector<float> v(n);
  for (float& x : v) x = float(pick(rng)) / 16.0f;
  return v;
}

// HC = 4 (every V4 model) at Flash's and Pro's widths and an odd one; the other stream counts the
// fast hc_pre is instantiated for (1 to 5), and 6, which takes the reference kernel in both orders.
TEST(CudaSmallKernelsTest, HcPreAndHeadFastAreTheReference) {
  REQUIRE_GPU();
  struct Shape {
    int hc;
    int64_t dim;
  };
  for (const Shape shape : {Shape{4, 4096}, Shape{4, 7168}, Shape{4, 1000}, Shape{1, 1000},
                            Shape{2, 1000}, Shape{3, 1000}, Shape{5, 1000}, Shape{6, 1000}}) {
    const int hc = shape.hc;
    const int64_t dim = shape.dim;
    TestHc pre(dim, hc, (2 + hc) * hc, 11);  // hc_mix() rows
    TestHc head(dim, hc, hc, 12);            // HC rows
    ASSERT_EQ(pre.config.hc_mix(), uint32_t((2 + hc) * hc));
    for (const int64_t T : kTokenCounts) {
      SCOPED_TRACE("HC " + std::to_string(hc) + ", dim " + std::to_string(dim) + ", tokens " +
                   std::to_string(T));
      const std::vector<float> X = coarse_states(static_cast<size_t>(T * hc * dim), uint32_t(T));
      DeviceArray<float> dX{std::span<const float>(X)};
      DeviceArray<float> mixer(static_cast<size_t>(T * pre.config.hc_mix()));
      struct Out {
        DeviceArray<float> y, post, comb, head;
      };
      auto run = [&](bool reference) {
        Out o{DeviceArray<float>(static_cast<size_t>(T * dim)),
              DeviceArray<float>(static_cast<size_t>(T * hc)),
              DeviceArray<float>(static_cast<size_t>(T * hc * hc)),
              DeviceArray<float>(static_cast<size_t>(T * dim))};
        in_order(reference, [&] {
          hc_pre_cuda(pre.config, pre.weights, dX.data(), T, o.y.data(),
                      HcMixDevice{o.post.data(), o.comb.data()}, mixer.data(), 0);
          hc_head_cuda(head.config, head.weights.fn, head.scale.data(), head.base.data(), dX.data(),
                       T, o.head.data(), mixer.data(), 0);
        });
        return o;
      };
      const Out ref = run(true);
      const Out fast = run(false);
      EXPECT_SAME_BITS(fast.y.download(), ref.y.download());
      EXPECT_SAME_BITS(fast.post.download(), ref.post.download());
      EXPECT_SAME_BITS(fast.comb.download(), ref.comb.download());
      EXPECT_SAME_BITS(fast.head.download(), ref.head.download());
      // Sinkhorn's result is doubly stochastic to within its last iteration's step.
      const std::vector<float> comb = fast.comb.download();
      for (int64_t t = 0; t < T; ++t) {
        for (int k = 0; k < hc; ++k) {
          double col = 0;
          for (int j = 0; j < hc; ++j) col += comb[(t * hc + j) * hc + k];
          EXPECT_NEAR(col, 1.0, 1e-3);
        }
      }
    }
  }
}

TEST(CudaSmallKernelsTest, HcPostFastIsTheReference) {
  REQUIRE_GPU();
  model::ModelConfig c;
  c.hc_count = 4;
  for (const int64_t dim : {4096, 1000}) {
    c.n_embd = uint32_t(dim);
    for (const int64_t T : kTokenCounts) {
      SCOPED_TRACE("dim " + std::to_string(dim) + ", tokens " + std::to_string(T));
      const std::vector<float> post = gaussian(static_cast<size_t>(T * 4), 1),
                               comb = gaussian(static_cast<size_t>(T * 16), 2),
                               f = gaussian(static_cast<size_t>(T * dim), 3),
                               X = gaussian(static_cast<size_t>(T * 4 * dim), 4);
      DeviceArray<float> dpost{std::span<const float>(post)}, dcomb{std::span<const float>(comb)},
          df{std::span<const float>(f)}, dX{std::span<const float>(X)};
      DeviceArray<float> ref(X.size()), fast(X.size());
      const HcMixDevice mix{dpost.data(), dcomb.data()};
      in_order(true, [&] { hc_post_cuda(c, mix, df.data(), dX.data(), T, ref.data(), 0); });
      in_order(false, [&] { hc_post_cuda(c, mix, df.data(), dX.data(), T, fast.data(), 0); });
      EXPECT_SAME_BITS(fast.download(), ref.download());
    }
  }
}

// The experts the router must choose, computed on the host: the n_used largest score + bias
// (float sums, as on the device), equal values to the lower id.
std::vector<int32_t> host_top_k(const std::vector<float>& scores, const std::vector<float>& bias,
                                int64_t T, int E, int K) {
  std::vector<int32_t> out;
  for (int64_t t = 0; t < T; ++t) {
    std::vector<int32_t> ids(static_cast<size_t>(E));
    std::iota(ids.begin(), ids.end(), 0);
    auto biased = [&](int32_t e) { return scores[t * E + e] + bias[e]; };
    std::stable_sort(ids.begin(), ids.end(),
                     [&](int32_t a, int32_t b) { return biased(a) > biased(b); });
    out.insert(out.end(), ids.begin(), ids.begin() + K);
  }
  return out;
}

TEST(CudaSmallKernelsTest, RouteFastIsTheReference) {
  REQUIRE_GPU();
  const int K = 6;
  const int64_t vocab = 97;
  for (const int E : {256, 64, 300, 512}) {
    for (const char* mode : {"biased", "ties", "hash"}) {
      for (const int64_t T : kTokenCounts) {
        SCOPED_TRACE(std::string(mode) + ", " + std::to_string(E) + " experts, " +
                     std::to_string(T) + " tokens");
        const bool ties = std::string(mode) == "ties", hash = std::string(mode) == "hash";
        std::mt19937 rng(uint32_t(E * 1000 + T));
        std::vector<float> logits = gaussian(static_cast<size_t>(T * E), rng(), 2.0f);
        std::vector<float> bias = gaussian(static_cast<size_t>(E), rng(), 0.1f);
        if (ties) {  // a few levels only: most of the top-k is decided by the ids
          std::uniform_int_distribution<int> level(0, 3);
          for (float& v : logits) v = 0.5f * float(level(rng));
          for (float& v : bias) v = 0.25f * float(level(rng) % 2);
        }
        std::vector<int32_t> tokens(static_cast<size_t>(T)), table(static_cast<size_t>(vocab * K));
        std::uniform_int_distribution<int32_t> token(0, int32_t(vocab - 1));
        for (int32_t& v : tokens) v = token(rng);
        for (int64_t v = 0; v < vocab; ++v) {
          std::vector<int32_t> ids(static_cast<size_t>(E));
          std::iota(ids.begin(), ids.end(), 0);
          std::shuffle(ids.begin(), ids.end(), rng);
          std::copy(ids.begin(), ids.begin() + K, table.begin() + v * K);
        }
        DeviceArray<float> dlogits{std::span<const float>(logits)},
            dbias{std::span<const float>(bias)};
        DeviceArray<int32_t> dtokens{std::span<const int32_t>(tokens)},
            dtable{std::span<const int32_t>(table)};
        struct Out {
          DeviceArray<float> scores;
          DeviceArray<int32_t> experts;
          DeviceArray<float> weights;
        };
        auto run = [&](bool reference) {
          Out o{DeviceArray<float>(logits.size()), DeviceArray<int32_t>(static_cast<size_t>(T * K)),
                DeviceArray<float>(static_cast<size_t>(T * K))};
          in_order(reference, [&] {
            route_tokens_cuda(dlogits.data(), dbias.data(), hash ? dtable.data() : nullptr,
                              dtokens.data(), T, E, K, 1.5f, o.scores.data(), o.experts.data(),
                              o.weights.data(), 0);
          });
          return o;
        };
        const Out ref = run(true);
        const Out fast = run(false);
        const std::vector<float> scores = fast.scores.download();
        const std::vector<int32_t> experts = fast.experts.download();
        EXPECT_SAME_BITS(scores, ref.scores.download());
        EXPECT_EQ(experts, ref.experts.download());
        EXPECT_SAME_BITS(fast.weights.download(), ref.weights.download());
        if (hash) {
          for (int64_t t = 0; t < T; ++t) {
            for (int k = 0; k < K; ++k) {
              EXPECT_EQ(experts[t * K + k], table[tokens[t] * K + k]);
            }
          }
        } else {
          EXPECT_EQ(experts, host_top_k(scores, bias, T, E, K));
        }
      }
    }
  }
}

TEST(CudaSmallKernelsTest, CombineFastIsTheReference) {
  REQUIRE_GPU();
  const int K = 6;
  for (const int64_t dim : {4096, 1000}) {
    for (const int64_t T : kTokenCounts) {
      for (const bool permuted : {false, true}) {
        SCOPED_TRACE("dim " + std::to_string(dim) + ", tokens " + std::to_string(T) +
                     (permuted ? ", permuted rows" : ""));
        std::mt19937 rng(uint32_t(T + dim));
        std::uniform_int_distribution<int32_t> expert(0, 15);  // few ids: repeats are common
        std::vector<int32_t> experts(static_cast<size_t>(T * K)), rows(static_cast<size_t>(T * K));
        for (int32_t& e : experts) e = expert(rng);
        std::iota(rows.begin(), rows.end(), 0);
        if (permuted) std::shuffle(rows.begin(), rows.end(), rng);
        const std::vector<float> routed = gaussian(static_cast<size_t>(T * K * dim), 5),
                                 shared = gaussian(static_cast<size_t>(T * dim), 6);
        DeviceArray<int32_t> dexperts{std::span<const int32_t>(experts)},
            drows{std::span<const int32_t>(rows)};
        DeviceArray<float> drouted{std::span<const float>(routed)},
            dshared{std::span<const float>(shared)};
        DeviceArray<float> ref(static_cast<size_t>(T * dim)), fast(static_cast<size_t>(T * dim));
        const int32_t* row_of_pair = permuted ? drows.data() : nullptr;
        in_order(true, [&] {
          combine_experts_cuda(dexperts.data(), drouted.data(), row_of_pair, dshared.data(), T, K,
                               dim, ref.data(), 0);
        });
        in_order(false, [&] {
          combine_experts_cuda(dexperts.data(), drouted.data(), row_of_pair, dshared.data(), T, K,
                               dim, fast.data(), 0);
        });
        const std::vector<float> got = fast.download();
        EXPECT_SAME_BITS(got, ref.download());
        // The host sum in the documented order: experts by increasing id, equal ids by slot.
        std::vector<float> want(static_cast<size_t>(T * dim));
        for (int64_t t = 0; t < T; ++t) {
          std::vector<int> order(K);
          std::iota(order.begin(), order.end(), 0);
          std::stable_sort(order.begin(), order.end(),
                           [&](int a, int b) { return experts[t * K + a] < experts[t * K + b]; });
          for (int64_t d = 0; d < dim; ++d) {
            float sum = 0.0f;
            for (int k : order) sum += routed[rows[t * K + k] * dim + d];
            want[t * dim + d] = sum + shared[t * dim + d];
          }
        }
        EXPECT_SAME_BITS(got, want);
      }
    }
  }
}

TEST(CudaSmallKernelsTest, GatherCopiesRows) {
  REQUIRE_GPU();
  for (const int64_t width : {1, 1000, 5000}) {
    const int64_t n_src = 50, n_rows = 70;
    const std::vector<float> src = gaussian(static_cast<size_t>(n_src * width), 8);
    std::vector<int32_t> rows(static_cast<size_t>(n_rows));
    for (size_t i = 0; i < rows.size(); ++i) rows[i] = int32_t((i * 37) % n_src);
    DeviceArray<float> dsrc{std::span<const float>(src)}, dst(static_cast<size_t>(n_rows * width));
    DeviceArray<int32_t> drows{std::span<const int32_t>(rows)};
    gather_rows_cuda(dsrc.data(), drows.data(), n_rows, width, dst.data(), 0);
    MAGNETAR_CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<float> want;
    for (int32_t r : rows)
      want.insert(want.end(), src.begin() + r * width, src.begin() + (r + 1) * width);
    EXPECT_SAME_BITS(dst.download(), want);
  }
}

// The tiny model decoding one token per step in the fast order (the fast GEMV and this file's
// kernels) against the CPU, plain numerics. The kernels of this file give the reference's bits, so
// the difference is the fast GEMV's summation order alone: about √K · 2^-24 ≈ 4e-6 of a product
// typically (linear.cuh), over ~50 products in series adding in quadrature ≈ 3e-5; a median of
// 3e-4 leaves a factor 10 for the gain of the network. A router's top-k may flip under such a
// perturbation and move a position a lot, so top-1 agreement and the mean KL are bounded instead
// of the maximum, as in cuda_prefill_model_test.cc. A wrong expert, weight or stream mix fails
// these by orders of magnitude.
TEST(CudaSmallKernelsTest, TinyModelDecodesCloseToCpu) {
  REQUIRE_GPU();
  for (const std::string types : {"f32", "q2"}) {
    SCOPED_TRACE(types);
    const gguf::GgufFile file =
        gguf::GgufFile::open(magnetar::testing::tiny_model(types, 7, false));
    CudaOptions g;
    g.context = 1024;
    g.official_numerics = false;
    g.progress = false;
    g.reference_order = false;
    CudaBackend gpu(file, g);
    cpu::CpuOptions o;
    o.official_numerics = false;
    cpu::CpuBackend cpu(file, o);
    const int64_t V = gpu.config().n_vocab;
    const std::vector<int32_t> tokens = magnetar::testing::random_tokens(150, 3);
    const std::vector<float> want = chunked_logits(cpu, tokens, 150);
    const std::vector<float> got = chunked_logits(gpu, tokens, 1);
    ASSERT_EQ(got.size(), want.size());
    const Agreement a = agreement(got, want, V);
    std::cout << "[ decode   ] " << types << " fast order vs cpu: median " << a.median() << ", max "
              << a.quantile(1.0) << ", top-1 " << a.top1 << ", mean KL " << a.mean_kl << "\n";
    EXPECT_LE(a.median(), 3e-4);
    EXPECT_GE(a.top1, 0.9);
    EXPECT_LE(a.mean_kl, 1e-3);
  }
}

}  // namespace
}  // namespace magnetar::gpu
