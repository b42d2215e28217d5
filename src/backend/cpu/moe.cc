#include "backend/cpu/moe.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "backend/cpu/linear.h"

namespace magnetar::cpu {
namespace {

using Floats = std::vector<float>;

// sqrt(softplus(z)), with PyTorch's softplus threshold (z above 20 is returned as is).
float sqrt_softplus(float z) { return std::sqrt(z > 20.0f ? z : std::log1p(std::exp(z))); }

float silu(float z) { return z / (1.0f + std::exp(-z)); }

// One SwiGLU expert on the rows `x` ([n][D], already FP8-rounded when official): the clamp limits
// up to ±limit and gate from above only; `scale[i]` (the router weight) multiplies the hidden row
// before the down projection. Adds the result into out_rows[i].
void run_expert(const MoeContext& ctx, const model::WeightMatrix& gate,
                const model::WeightMatrix& up, const model::WeightMatrix& down, const Floats& x,
                const std::vector<float>& scale, const std::vector<float*>& out_rows) {
  const int64_t n = static_cast<int64_t>(scale.size()), F = gate.rows, D = down.rows;
  Floats g(static_cast<size_t>(n * F)), u(g.size()), y(static_cast<size_t>(n * D));
  linear(ctx.pool, gate, x.data(), n, g.data());
  linear(ctx.pool, up, x.data(), n, u.data());
  const float limit = ctx.swiglu_clamp;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t f = 0; f < F; ++f) {
      float gv = std::min(g[i * F + f], limit);
      float uv = std::clamp(u[i * F + f], -limit, limit);
      g[i * F + f] = silu(gv) * uv * scale[i];
    }
  }
  act_quant_fp8(g.data(), n, F, ctx.official, g.data());
  linear(ctx.pool, down, g.data(), n, y.data());
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t d = 0; d < D; ++d) out_rows[i][d] += y[i * D + d];
  }
}

}  // namespace

void moe_chunk(const MoeContext& ctx, const int32_t* tokens, const float* x, int64_t n_tokens,
               float* out) {
  const model::ModelConfig& c = ctx.config;
  const model::BlockWeights& w = ctx.weights;
  const int64_t D = c.n_embd, E = c.n_expert, K = c.n_expert_used, T = n_tokens;

  // Router (§7.1, §7.2): scores from the unbiased sqrt-softplus; the bias only picks experts.
  Floats logits(static_cast<size_t>(T * E));
  linear(ctx.pool, w.gate_inp, x, T, logits.data());
  std::vector<std::vector<int64_t>> tokens_of(static_cast<size_t>(E));
  std::vector<std::vector<float>> weights_of(static_cast<size_t>(E));
  std::vector<int64_t> order(static_cast<size_t>(E));
  for (int64_t t = 0; t < T; ++t) {
    Floats s(static_cast<size_t>(E));
    for (int64_t e = 0; e < E; ++e) s[e] = sqrt_softplus(logits[t * E + e]);
    std::vector<int64_t> chosen;
    if (w.token_experts != nullptr) {
      for (int64_t k = 0; k < K; ++k) chosen.push_back(w.token_experts[tokens[t] * K + k]);
    } else {
      std::iota(order.begin(), order.end(), 0);
      auto biased = [&](int64_t e) { return s[e] + w.expert_bias[e]; };
      std::partial_sort(order.begin(), order.begin() + K, order.end(), [&](int64_t a, int64_t b) {
        return biased(a) != biased(b) ? biased(a) > biased(b) : a < b;
      });
      chosen.assign(order.begin(), order.begin() + K);
    }
    float sum = 0;
    for (int64_t e : chosen) sum += s[e];
    for (int64_t e : chosen) {
      tokens_of[e].push_back(t);
      weights_of[e].push_back(s[e] / sum * c.expert_weights_scale);
    }
  }

  Floats xq(static_cast<size_t>(T * D));
  act_quant_fp8(x, T, D, ctx.official, xq.data());
  std::fill(out, out + T * D, 0.0f);
  // Experts in increasing id order, then the shared expert (§7.4).
  for (int64_t e = 0; e < E; ++e) {
    const std::vector<int64_t>& ts = tokens_of[e];
    if (ts.empty()) continue;
    Floats rows(ts.size() * static_cast<size_t>(D));
    std::vector<float*> dst;
    for (size_t i = 0; i < ts.size(); ++i) {
      std::copy(xq.begin() + ts[i] * D, xq.begin() + (ts[i] + 1) * D, rows.begin() + i * D);
      dst.push_back(out + ts[i] * D);
    }
    run_expert(ctx, w.gate_exps.expert(e), w.up_exps.expert(e), w.down_exps.expert(e), rows,
               weights_of[e], dst);
  }
  std::vector<float*> all(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) all[t] = out + t * D;
  run_expert(ctx, w.gate_shexp, w.up_shexp, w.down_shexp, xq, std::vector<float>(T, 1.0f), all);
}

}  // namespace magnetar::cpu
