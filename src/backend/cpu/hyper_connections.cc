#include "backend/cpu/hyper_connections.h"

#include <cmath>

#include "backend/cpu/linear.h"

namespace magnetar::cpu {
namespace {

float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

// The mixer logits m = (fn · x) / rms(x) over the flattened streams of each token: the official
// order is the GEMV on the raw state, then the scaling.
std::vector<float> mixer_logits(ThreadPool& pool, const model::ModelConfig& c,
                                const model::WeightMatrix& fn, const float* X, int64_t n_tokens) {
  const int64_t flat = c.hc_dim(), mix = fn.rows;
  std::vector<float> m(static_cast<size_t>(n_tokens * mix));
  linear(pool, fn, X, n_tokens, m.data());
  for (int64_t t = 0; t < n_tokens; ++t) {
    double sq = 0;
    for (int64_t i = 0; i < flat; ++i) sq += static_cast<double>(X[t * flat + i]) * X[t * flat + i];
    float r = 1.0f / std::sqrt(static_cast<float>(sq / flat) + c.rms_eps);
    for (int64_t j = 0; j < mix; ++j) m[t * mix + j] *= r;
  }
  return m;
}

// Sinkhorn normalization of exp(C0) (model.md §5.1 step 7): one softmax row step, then
// alternating column and row normalizations, `iters` column steps in all.
void sinkhorn(float* C, int64_t n, uint32_t iters, float eps) {
  for (int64_t j = 0; j < n; ++j) {
    float* row = C + j * n;
    float m = row[0];
    for (int64_t k = 1; k < n; ++k) m = std::max(m, row[k]);
    float sum = 0;
    for (int64_t k = 0; k < n; ++k) sum += (row[k] = std::exp(row[k] - m));
    for (int64_t k = 0; k < n; ++k) row[k] = row[k] / sum + eps;
  }
  auto normalize_columns = [&] {
    for (int64_t k = 0; k < n; ++k) {
      float sum = 0;
      for (int64_t j = 0; j < n; ++j) sum += C[j * n + k];
      for (int64_t j = 0; j < n; ++j) C[j * n + k] /= sum + eps;
    }
  };
  normalize_columns();
  for (uint32_t it = 1; it < iters; ++it) {
    for (int64_t j = 0; j < n; ++j) {
      float sum = 0;
      for (int64_t k = 0; k < n; ++k) sum += C[j * n + k];
      for (int64_t k = 0; k < n; ++k) C[j * n + k] /= sum + eps;
    }
    normalize_columns();
  }
}

}  // namespace

void hc_pre(ThreadPool& pool, const model::ModelConfig& c, const model::HyperConnectionWeights& w,
            const float* X, int64_t n_tokens, float* y, HcMix& mix) {
  const int64_t hc = c.hc_count, D = c.n_embd, n_mix = c.hc_mix();
  std::vector<float> m = mixer_logits(pool, c, w.fn, X, n_tokens);
  mix.post.assign(static_cast<size_t>(n_tokens * hc), 0.0f);
  mix.comb.assign(static_cast<size_t>(n_tokens * hc * hc), 0.0f);
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* mt = m.data() + t * n_mix;
    std::vector<float> pre(static_cast<size_t>(hc));
    for (int64_t h = 0; h < hc; ++h) {
      pre[h] = sigmoid(mt[h] * w.scale[0] + w.base[h]) + c.hc_eps;
      mix.post[t * hc + h] = 2.0f * sigmoid(mt[hc + h] * w.scale[1] + w.base[hc + h]);
    }
    float* C = mix.comb.data() + t * hc * hc;
    for (int64_t i = 0; i < hc * hc; ++i) C[i] = mt[2 * hc + i] * w.scale[2] + w.base[2 * hc + i];
    sinkhorn(C, hc, c.hc_sinkhorn_iters, c.hc_eps);
    const float* Xt = X + t * hc * D;
    for (int64_t d = 0; d < D; ++d) {
      float s = 0;
      for (int64_t h = 0; h < hc; ++h) s += pre[h] * Xt[h * D + d];
      y[t * D + d] = s;
    }
  }
}

void hc_post(const model::ModelConfig& c, const HcMix& mix, const float* f, int64_t n_tokens,
             float* X) {
  const int64_t hc = c.hc_count, D = c.n_embd;
  std::vector<float> old(static_cast<size_t>(hc * D));
  for (int64_t t = 0; t < n_tokens; ++t) {
    float* Xt = X + t * hc * D;
    std::copy(Xt, Xt + hc * D, old.begin());
    const float* C = mix.comb.data() + t * hc * hc;
    for (int64_t k = 0; k < hc; ++k) {
      const float post = mix.post[t * hc + k];
      for (int64_t d = 0; d < D; ++d) {
        float s = post * f[t * D + d];
        for (int64_t j = 0; j < hc; ++j) s += C[j * hc + k] * old[j * D + d];
        Xt[k * D + d] = s;
      }
    }
  }
}

void hc_head(ThreadPool& pool, const model::ModelConfig& c, const model::WeightMatrix& fn,
             const std::vector<float>& scale, const std::vector<float>& base, const float* X,
             int64_t n_tokens, float* y) {
  const int64_t hc = c.hc_count, D = c.n_embd;
  std::vector<float> m = mixer_logits(pool, c, fn, X, n_tokens);
  for (int64_t t = 0; t < n_tokens; ++t) {
    std::vector<float> w(static_cast<size_t>(hc));
    for (int64_t h = 0; h < hc; ++h) w[h] = sigmoid(m[t * hc + h] * scale[0] + base[h]) + c.hc_eps;
    for (int64_t d = 0; d < D; ++d) {
      float s = 0;
      for (int64_t h = 0; h < hc; ++h) s += w[h] * X[t * hc * D + h * D + d];
      y[t * D + d] = s;
    }
  }
}

}  // namespace magnetar::cpu
