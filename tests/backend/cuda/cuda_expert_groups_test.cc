// The grouped routed experts (expert_groups.cuh) against a double-precision host computation of
// every (token, slot) pair, for routings that stress the grouping: every pair on one expert, every
// expert once, skewed counts with empty experts, several groups; the plan on its own (no GPU
// needed); and moe_chunk_cuda's tensor-core path against its reference path.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <iostream>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/linear.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/expert_groups.cuh"
#include "backend/cuda/gemm_tc.cuh"
#include "backend/cuda/moe.cuh"
#include "gpu_test_weights.h"

namespace magnetar::gpu {
namespace {

using quant::GgmlType;
using testing::gaussian;
using testing::TestExperts;
using testing::TestWeights;

#define REQUIRE_GPU() \
  if (!cuda_backend_usable()) GTEST_SKIP() << "no usable CUDA device"

TEST(ExpertPlan, GroupsSortedByCountWithBoundedPadding) {
  // Experts 1 and 4 empty; 6 has the most tokens; 0 and 5 tie (lower id first).
  const std::vector<int32_t> counts = {10, 0, 3, 9, 0, 10, 40, 1};
  const ExpertPlan plan = plan_expert_groups(counts, 3, 8);
  EXPECT_EQ(plan.experts, (std::vector<int32_t>{6, 0, 5, 3, 2, 7}));
  // 6 alone (10 < 40 / 2); 0, 5, 3 together (at most 3); 2 alone (7's 1 < 3 / 2); then 7.
  ASSERT_EQ(plan.groups.size(), 4u);
  EXPECT_EQ(plan.groups[0].begin, 0);
  EXPECT_EQ(plan.groups[0].end, 1);
  EXPECT_EQ(plan.groups[0].tokens, 40);
  EXPECT_EQ(plan.groups[1].end, 4);
  EXPECT_EQ(plan.groups[1].tokens, 16);
  EXPECT_EQ(plan.groups[2].tokens, 8);
  EXPECT_EQ(plan.groups[3].tokens, 8);
  EXPECT_EQ(plan.first_row, (std::vector<int32_t>{40, -1, 88, 72, -1, 56, 0, 96}));
  EXPECT_EQ(plan.rows, 104);
  // The documented bound: rows ≤ 2 Σ counts + experts · (align − 1).
  EXPECT_LE(plan.rows, 2 * 73 + 8 * 7);
}

TEST(ExpertPlan, EdgeCases) {
  EXPECT_TRUE(plan_expert_groups(std::vector<int32_t>(5, 0), 4, 8).groups.empty());
  const ExpertPlan one = plan_expert_groups(std::vector<int32_t>{0, 0, 37}, 4, 8);
  EXPECT_EQ(one.experts, std::vector<int32_t>{2});
  EXPECT_EQ(one.rows, 40);
  const ExpertPlan each = plan_expert_groups(std::vector<int32_t>(10, 1), 4, 1);
  EXPECT_EQ(each.groups.size(), 3u);  // 4 + 4 + 2
  EXPECT_EQ(each.rows, 10);
  EXPECT_THROW(plan_expert_groups(std::vector<int32_t>{1, -1}, 4, 8), std::invalid_argument);
  EXPECT_THROW(plan_expert_groups(std::vector<int32_t>{1}, 0, 8), std::invalid_argument);
  EXPECT_THROW(plan_expert_groups(std::vector<int32_t>{1}, 4, 0), std::invalid_argument);
}

constexpr int64_t kExperts = 12, kDim = 256, kFfn = 256;
constexpr float kLimit = 10.0f;

double product_bound(double abs_sum, double sum_x, double sum_w, double amax_x, int64_t k) {
  const double relative = std::ldexp(1.0, -10) + std::ldexp(1.0, -22) + k * std::ldexp(1.0, -24);
  return relative * abs_sum + std::ldexp(1.0, -24) * sum_x + std::ldexp(1.0, -38) * amax_x * sum_w;
}

double silu(double z) { return z / (1.0 + std::exp(-z)); }

// One layer's experts with their CPU-decoded matrices.
struct Experts {
  TestExperts gate, up, down;
  std::vector<std::vector<float>> wg, wu, wd;
  Experts(GgmlType gate_type, GgmlType down_type)
      : gate(gate_type, kFfn, kDim, kExperts, 100),
        up(gate_type, kFfn, kDim, kExperts, 200),
        down(down_type, kDim, kFfn, kExperts, 300) {
    for (int64_t e = 0; e < kExperts; ++e) {
      wg.push_back(gate.weights.decoded(e));
      wu.push_back(up.weights.decoded(e));
      wd.push_back(down.weights.decoded(e));
    }
  }
  ExpertFfn ffn(bool official) const { return {&gate.gpu, &up.gpu, &down.gpu, kLimit, official}; }
};

// Expected outputs of every pair, in double, with a bound on each value (plain numerics): the
// gemm_tc.cuh bound on gate and up, carried through SwiGLU by its derivatives (silu' ≤ 1.1, the
// clamps are 1-Lipschitz), then the bound of the down product on the perturbed input.
struct Expected {
  std::vector<double> out, bound;
};

Expected expected_outputs(const Experts& m, const std::vector<int32_t>& ids,
                          const std::vector<float>& weights, const std::vector<float>& x,
                          int n_used, bool official) {
  const int64_t P = static_cast<int64_t>(ids.size());
  double amax_x = 0;
  for (float v : x) amax_x = std::max(amax_x, std::abs(double(v)));
  std::vector<std::vector<double>> mids(P), dmids(P);
  double amax_mid = 0;
  for (int64_t p = 0; p < P; ++p) {
    const int e = ids[p];
    const float* xt = x.data() + (p / n_used) * kDim;
    double sum_x = 0;
    for (int64_t d = 0; d < kDim; ++d) sum_x += std::abs(double(xt[d]));
    std::vector<float> mid_f(kFfn);
    for (int64_t f = 0; f < kFfn; ++f) {
      double g = 0, u = 0, ag = 0, au = 0, swg = 0, swu = 0;
      for (int64_t d = 0; d < kDim; ++d) {
        const double a = double(m.wg[e][f * kDim + d]) * xt[d];
        const double b = double(m.wu[e][f * kDim + d]) * xt[d];
        g += a;
        u += b;
        ag += std::abs(a);
        au += std::abs(b);
        swg += std::abs(double(m.wg[e][f * kDim + d]));
        swu += std::abs(double(m.wu[e][f * kDim + d]));
      }
      const double dg = product_bound(ag, sum_x, swg, amax_x, kDim);
      const double du = product_bound(au, sum_x, swu, amax_x, kDim);
      const double gc = std::min(g, double(kLimit));
      const double uc = std::clamp(u, -double(kLimit), double(kLimit));
      const double w = weights[p];
      const double mid = silu(gc) * uc * w;
      mids[p].push_back(mid);
      dmids[p].push_back(std::abs(w) * (1.1 * dg * (std::abs(uc) + du) + std::abs(silu(gc)) * du) +
                         1e-6 * std::abs(mid));
      mid_f[f] = static_cast<float>(mid);
    }
    if (official) {
      cpu::act_quant_fp8(mid_f.data(), 1, kFfn, true, mid_f.data());
      for (int64_t f = 0; f < kFfn; ++f) mids[p][f] = mid_f[f];
    }
    for (int64_t f = 0; f < kFfn; ++f) amax_mid = std::max(amax_mid, std::abs(mids[p][f]));
  }
  Expected r;
  for (int64_t p = 0; p < P; ++p) {
    const int e = ids[p];
    double sum_mid = 0;
    for (int64_t f = 0; f < kFfn; ++f) sum_mid += std::abs(mids[p][f]) + dmids[p][f];
    for (int64_t j = 0; j < kDim; ++j) {
      double out = 0, carried = 0, abs_sum = 0, sum_w = 0;
      for (int64_t f = 0; f < kFfn; ++f) {
        const double w = m.wd[e][j * kFfn + f];
        out += w * mids[p][f];
        carried += std::abs(w) * dmids[p][f];
        abs_sum += std::abs(w) * (std::abs(mids[p][f]) + dmids[p][f]);
        sum_w += std::abs(w);
      }
      r.out.push_back(out);
      r.bound.push_back(1.25 * (carried + product_bound(abs_sum, sum_mid, sum_w, amax_mid, kFfn)));
    }
  }
  return r;
}

// Runs the grouped experts and returns pair p's outputs at p · D, after checking that the rows of
// each expert's pairs are consecutive from its first row, in pair order.
std::vector<float> run_grouped(TensorCoreGemm& gemm, const Experts& m,
                               const std::vector<int32_t>& ids, const std::vector<float>& weights,
                               const std::vector<float>& x, int n_used, bool official,
                               ExpertGroupBuffers& buffers) {
  DeviceArray<int32_t> dids{std::span<const int32_t>(ids)};
  DeviceArray<float> dw{std::span<const float>(weights)};
  DeviceArray<float> dx{std::span<const float>(x)};
  const int64_t T = static_cast<int64_t>(x.size()) / kDim;
  const ExpertRows rows = routed_experts_tensor_core(gemm, m.ffn(official), dids.data(), dw.data(),
                                                     dx.data(), T, n_used, buffers, nullptr);
  MAGNETAR_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_EQ(rows.stride, kDim);
  const int64_t P = static_cast<int64_t>(ids.size());
  std::vector<int32_t> row_of_pair(static_cast<size_t>(P));
  MAGNETAR_CUDA_CHECK(cudaMemcpy(row_of_pair.data(), rows.row_of_pair, P * sizeof(int32_t),
                                 cudaMemcpyDeviceToHost));
  std::vector<float> all(static_cast<size_t>(buffers.plan.rows * kDim));
  MAGNETAR_CUDA_CHECK(
      cudaMemcpy(all.data(), rows.rows, all.size() * sizeof(float), cudaMemcpyDeviceToHost));
  std::vector<int32_t> next = buffers.plan.first_row;
  std::vector<float> out;
  for (int64_t p = 0; p < P; ++p) {
    EXPECT_EQ(row_of_pair[p], next[ids[p]]++) << "pair " << p;
    const int64_t r = row_of_pair[p];
    if (r < 0 || r >= buffers.plan.rows) continue;
    out.insert(out.end(), all.begin() + r * kDim, all.begin() + (r + 1) * kDim);
  }
  return out;
}

struct Routing {
  std::string name;
  std::vector<int32_t> ids;
  int n_used;
};

std::vector<Routing> routings() {
  std::vector<Routing> r;
  r.push_back({"all pairs on expert 5", std::vector<int32_t>(40 * 3, 5), 3});
  std::vector<int32_t> each(kExperts);
  std::iota(each.begin(), each.end(), 0);
  std::shuffle(each.begin(), each.end(), std::mt19937(1));
  r.push_back({"every expert once", each, 3});
  // Skewed: expert e drawn with weight 1/(e+1)^2, experts 3 and 7 never.
  std::mt19937 rng(2);
  std::vector<double> p(kExperts);
  for (int64_t e = 0; e < kExperts; ++e)
    p[e] = (e == 3 || e == 7) ? 0.0 : 1.0 / ((e + 1) * (e + 1));
  std::discrete_distribution<int32_t> skew(p.begin(), p.end());
  std::vector<int32_t> skewed(70 * 2);
  for (int32_t& id : skewed) id = skew(rng);
  r.push_back({"skewed, some experts empty", skewed, 2});
  std::vector<int32_t> uniform(100 * 6);
  for (int32_t& id : uniform) id = static_cast<int32_t>(rng() % kExperts);
  r.push_back({"uniform", uniform, 6});
  return r;
}

class GroupedExperts : public ::testing::TestWithParam<bool> {};  // official numerics

TEST_P(GroupedExperts, WithinBoundOfDoubleComputation) {
  REQUIRE_GPU();
  const bool official = GetParam();
  Experts m(GgmlType::kIQ2_XXS, GgmlType::kQ2_K);  // Flash's types
  TensorCoreOptions o;
  o.weight_scratch_bytes = size_t{1} << 20;  // 4 experts per group: several groups
  TensorCoreGemm small(o);
  TensorCoreGemm large;
  ExpertGroupBuffers buffers;
  for (const Routing& routing : routings()) {
    SCOPED_TRACE(routing.name);
    const int64_t P = static_cast<int64_t>(routing.ids.size());
    const int64_t T = P / routing.n_used;
    std::vector<float> x = gaussian(static_cast<size_t>(T * kDim), 31);
    for (int64_t d = 0; d < kDim; ++d) x[d] *= 30.0f;  // token 0 drives the clamps
    const std::vector<float> weights = gaussian(static_cast<size_t>(P), 32, 0.5f);
    const Expected e = expected_outputs(m, routing.ids, weights, x, routing.n_used, official);
    for (TensorCoreGemm* gemm : {&small, &large}) {
      const std::vector<float> got =
          run_grouped(*gemm, m, routing.ids, weights, x, routing.n_used, official, buffers);
      ASSERT_EQ(got.size(), e.out.size());
      double diff2 = 0, ref2 = 0;
      int64_t outside = 0;
      for (size_t i = 0; i < got.size(); ++i) {
        const double d = std::abs(got[i] - e.out[i]);
        diff2 += d * d;
        ref2 += e.out[i] * e.out[i];
        outside += !(d <= e.bound[i]);
      }
      const double relative = std::sqrt(diff2 / ref2);
      if (official) {
        // A small difference before the FP8 rounding of mid moves an element to the next E4M3
        // code (1/16 to 1/8 of its size) now and then: about 2 Δmid / spacing ≈ 1.2e-3 / 0.09 of
        // them, which moves the outputs by ≈ 0.09 · √0.013 ≈ 1e-2 in norm; the exact rounding
        // itself is the CPU's twin (cuda_linear_test), this checks the path around it.
        EXPECT_LE(relative, 3e-2);
      } else {
        EXPECT_EQ(outside, 0);
        EXPECT_LE(relative, 3e-3);
      }
      std::cout << "[ grouped  ] " << routing.name << (official ? ", official" : ", plain") << ": "
                << buffers.plan.groups.size() << " groups, " << buffers.plan.rows
                << " rows, relative error " << relative << "\n";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Numerics, GroupedExperts, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? std::string("official") : std::string("plain");
                         });

TEST(GroupedExpertsArguments, ExpertOutsideTheTablesIsRefused) {
  REQUIRE_GPU();
  Experts m(GgmlType::kF32, GgmlType::kF32);
  TensorCoreGemm gemm;
  ExpertGroupBuffers buffers;
  const std::vector<int32_t> ids = {0, 1, kExperts, 2};
  const std::vector<float> weights(ids.size(), 1.0f);
  const std::vector<float> x = gaussian(static_cast<size_t>(2 * kDim), 5);
  EXPECT_THROW(run_grouped(gemm, m, ids, weights, x, 2, false, buffers), std::runtime_error);
  DeviceExperts half = m.down.gpu;
  half.shape.rows /= 2;  // down no longer maps F back to D
  const ExpertFfn bad{&m.gate.gpu, &m.up.gpu, &half, kLimit, false};
  EXPECT_THROW(
      routed_experts_tensor_core(gemm, bad, nullptr, nullptr, nullptr, 2, 2, buffers, nullptr),
      std::invalid_argument);
}

// moe_chunk_cuda on a hash-routed layer (the experts are then the same on both paths, whatever the
// router's rounding): the tensor-core path close to the reference path, and the reference path's
// bits below the threshold.
TEST(MoeChunkTensorCores, CloseToReferencePath) {
  REQUIRE_GPU();
  const int K = 3, vocab = 64;
  Experts m(GgmlType::kIQ2_XXS, GgmlType::kQ2_K);
  TestWeights router(GgmlType::kF16, kExperts, kDim, 1, 41);
  TestWeights shared_gate(GgmlType::kQ8_0, kFfn, kDim, 1, 42);
  TestWeights shared_up(GgmlType::kQ8_0, kFfn, kDim, 1, 43);
  TestWeights shared_down(GgmlType::kQ8_0, kDim, kFfn, 1, 44);
  std::mt19937 rng(45);
  std::vector<int32_t> table;
  for (int t = 0; t < vocab; ++t) {
    std::vector<int32_t> e(kExperts);
    std::iota(e.begin(), e.end(), 0);
    std::shuffle(e.begin(), e.end(), rng);
    table.insert(table.end(), e.begin(), e.begin() + K);
  }
  DeviceArray<int32_t> dtable{std::span<const int32_t>(table)};
  DeviceBlock block;
  block.gate_inp = router.gpu;
  block.token_experts = dtable.data();
  block.gate_exps = m.gate.gpu;
  block.up_exps = m.up.gpu;
  block.down_exps = m.down.gpu;
  block.gate_shexp = shared_gate.gpu;
  block.up_shexp = shared_up.gpu;
  block.down_shexp = shared_down.gpu;
  model::ModelConfig c;
  c.n_expert = kExperts;
  c.n_expert_used = K;
  c.n_embd = kDim;
  c.expert_ffn = kFfn;
  c.expert_weights_scale = 1.5f;

  TensorCoreGemm gemm;
  MoeBuffers buffers;
  auto run = [&](bool official, int64_t T, bool fast) {
    std::vector<int32_t> tokens(static_cast<size_t>(T));
    for (int32_t& t : tokens) t = static_cast<int32_t>(rng() % vocab);
    const std::vector<float> x = gaussian(static_cast<size_t>(T * kDim), 46);
    DeviceArray<int32_t> dtokens{std::span<const int32_t>(tokens)};
    DeviceArray<float> dx{std::span<const float>(x)};
    DeviceArray<float> out(static_cast<size_t>(T * kDim));
    buffers.reserve(c, T);
    const MoeContext ctx{c, block, kLimit, official, 0, nullptr};
    ScopedTensorCoreGemm scope(fast ? &gemm : nullptr);
    moe_chunk_cuda(ctx, dtokens.data(), dx.data(), T, out.data(), buffers, nullptr);
    MAGNETAR_CUDA_CHECK(cudaDeviceSynchronize());
    return out.download();
  };
  for (bool official : {false, true}) {
    SCOPED_TRACE(official ? "official" : "plain");
    const int64_t T = 80;
    const uint32_t state = rng();
    rng.seed(state);
    const std::vector<float> reference = run(official, T, false);
    rng.seed(state);
    const std::vector<float> fast = run(official, T, true);
    double worst = 0, diff2 = 0, ref2 = 0;
    for (int64_t t = 0; t < T; ++t) {
      double d2 = 0, r2 = 0;
      for (int64_t d = 0; d < kDim; ++d) {
        const double a = fast[t * kDim + d], b = reference[t * kDim + d];
        ASSERT_TRUE(std::isfinite(a));
        d2 += (a - b) * (a - b);
        r2 += b * b;
      }
      worst = std::max(worst, std::sqrt(d2 / r2));
      diff2 += d2;
      ref2 += r2;
    }
    // Plain: three f16 products in series (router weights, experts, shared expert), ≈ 1e-3 per
    // token typically; official: the FP8 rounding events of the grouped test.
    EXPECT_LE(std::sqrt(diff2 / ref2), official ? 3e-2 : 3e-3);
    EXPECT_LE(worst, official ? 1e-1 : 6e-3);
    std::cout << "[ moe      ] " << (official ? "official" : "plain") << ": relative "
              << std::sqrt(diff2 / ref2) << ", worst token " << worst << "\n";

    // One token under the threshold: the reference path's bits.
    const int64_t below = gemm.options().min_expert_tokens - 1;
    const uint32_t again = rng();
    rng.seed(again);
    const std::vector<float> ref_below = run(official, below, false);
    rng.seed(again);
    const std::vector<float> fast_below = run(official, below, true);
    EXPECT_TRUE(std::equal(
        ref_below.begin(), ref_below.end(), fast_below.begin(),
        [](float a, float b) { return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b); }));
  }
}

}  // namespace
}  // namespace magnetar::gpu
