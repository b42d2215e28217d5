#include "backend/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "backend/cpu/linear.h"

namespace magnetar::cpu {
namespace {

using Floats = std::vector<float>;

Floats run_linear(ThreadPool& pool, const model::WeightMatrix& w, const float* x, int64_t n) {
  Floats y(static_cast<size_t>(n * w.rows));
  linear(pool, w, x, n, y.data());
  return y;
}

// Steps one compressor over the chunk's tokens and finishes every emitted row: RMSNorm, RoPE at
// the block's first position, then `finish` (the FP8 KV rounding for attention rows, the Hadamard
// and FP4 rounding for indexer rows). Returns, per token, how many rows are visible to it.
template <typename Finish>
std::vector<int64_t> run_compressor(const AttentionContext& ctx, const model::CompressorWeights& w,
                                    CompressorState& state, int64_t first_position, const float* x,
                                    int64_t n_tokens, Finish finish) {
  const int64_t width = state.width, c = state.head_width, R = ctx.config.rope_dim;
  Floats kv = run_linear(ctx.pool, w.kv, x, n_tokens);
  Floats score = run_linear(ctx.pool, w.gate, x, n_tokens);
  std::vector<int64_t> visible(static_cast<size_t>(n_tokens));
  Floats row(static_cast<size_t>(c));
  for (int64_t t = 0; t < n_tokens; ++t) {
    const int64_t pos = first_position + t;
    float* sc = score.data() + t * width;
    const float* ape = w.ape.data() + (pos % state.ratio) * width;
    for (int64_t i = 0; i < width; ++i) sc[i] += ape[i];
    if (compressor_push(state, pos, kv.data() + t * width, sc, row.data())) {
      rms_norm(row.data(), w.norm.data(), row.data(), c, ctx.config.rms_eps);
      const int64_t block_start = pos + 1 - state.ratio;  // b·r
      ctx.rope.rotate(row.data() + c - R, block_start, /*inverse=*/false);
      finish(row.data());
      state.rows.insert(state.rows.end(), row.begin(), row.end());
    }
    visible[t] = state.n_rows();
  }
  return visible;
}

// The indexer's choice of compressed rows for each query (model.md §6.5): all visible rows when
// there are at most top_k, else the top_k highest scores, ties to the lower row index.
std::vector<std::vector<int64_t>> indexer_select(const AttentionContext& ctx, LayerState& state,
                                                 ForwardCounters& counters, bool commit,
                                                 int64_t first_position, const float* x,
                                                 const float* qr_quant, int64_t n_tokens) {
  const model::ModelConfig& c = ctx.config;
  const model::IndexerWeights& w = *ctx.weights.indexer;
  const int64_t heads = c.indexer_heads, dim = c.indexer_head_dim, R = c.rope_dim;
  Floats q = run_linear(ctx.pool, w.q_b, qr_quant, n_tokens);
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t h = 0; h < heads; ++h) {
      float* qh = q.data() + (t * heads + h) * dim;
      ctx.rope.rotate(qh + dim - R, first_position + t, false);
      hadamard(qh, dim);
      if (ctx.official) fp4_simulate(qh, dim, 32);
    }
  }
  std::vector<int64_t> visible = run_compressor(ctx, w.compressor, *state.indexer, first_position,
                                                x, n_tokens, [&](float* row) {
                                                  hadamard(row, dim);
                                                  if (ctx.official) fp4_simulate(row, dim, 32);
                                                });
  Floats weights = run_linear(ctx.pool, w.proj, x, n_tokens);
  const float weight_scale = 1.0f / std::sqrt(static_cast<float>(dim * heads));
  std::vector<std::vector<int64_t>> selected(static_cast<size_t>(n_tokens));
  const int64_t top_k = c.indexer_top_k;
  int64_t partial = 0;
  ctx.pool.parallel_for(n_tokens, [&](int64_t begin, int64_t end) {
    Floats scores;
    for (int64_t t = begin; t < end; ++t) {
      const int64_t n = visible[t];
      std::vector<int64_t>& sel = selected[t];
      sel.resize(static_cast<size_t>(n));
      std::iota(sel.begin(), sel.end(), 0);
      if (n <= top_k) continue;
      scores.assign(static_cast<size_t>(n), 0.0f);
      for (int64_t i = 0; i < n; ++i) {
        const float* k = state.indexer->row(i);
        float s = 0;
        for (int64_t h = 0; h < heads; ++h) {
          const float* qh = q.data() + (t * heads + h) * dim;
          float dot = 0;
          for (int64_t d = 0; d < dim; ++d) dot += qh[d] * k[d];
          s += std::max(dot, 0.0f) * (weights[t * heads + h] * weight_scale);
        }
        scores[i] = s;
      }
      std::partial_sort(sel.begin(), sel.begin() + top_k, sel.end(), [&](int64_t a, int64_t b) {
        return scores[a] != scores[b] ? scores[a] > scores[b] : a < b;
      });
      sel.resize(static_cast<size_t>(top_k));
    }
  });
  for (int64_t t = 0; t < n_tokens; ++t) partial += visible[t] > top_k;
  if (commit) counters.indexer_partial_selections += partial;
  return selected;
}

}  // namespace

void attention_chunk(const AttentionContext& ctx, LayerState& state, ForwardCounters& counters,
                     int64_t first_position, const float* x, int64_t n_tokens, float* out,
                     bool commit) {
  const model::ModelConfig& c = ctx.config;
  const model::BlockWeights& w = ctx.weights;
  const int64_t D = c.n_embd, H = c.n_head, hd = c.head_dim, R = c.rope_dim, nope = hd - R;
  const int64_t W = c.sliding_window, T = n_tokens;

  // Query path (§6.1): low-rank q, its RMSNorm, heads, per-head unweighted RMSNorm, RoPE.
  Floats xq(static_cast<size_t>(T * D));
  act_quant_fp8(x, T, D, ctx.official, xq.data());
  Floats qr = run_linear(ctx.pool, w.q_a, xq.data(), T);
  const int64_t ql = w.q_a.rows;
  for (int64_t t = 0; t < T; ++t) {
    rms_norm(qr.data() + t * ql, w.q_a_norm.data(), qr.data() + t * ql, ql, c.rms_eps);
  }
  Floats qr_quant(qr.size());
  act_quant_fp8(qr.data(), T, ql, ctx.official, qr_quant.data());
  Floats q = run_linear(ctx.pool, w.q_b, qr_quant.data(), T);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t h = 0; h < H; ++h) {
      float* qh = q.data() + (t * H + h) * hd;
      rms_norm(qh, nullptr, qh, hd, c.rms_eps);
      ctx.rope.rotate(qh + nope, first_position + t, false);
    }
  }

  // The shared key/value row (§6.2).
  Floats kv = run_linear(ctx.pool, w.kv, xq.data(), T);
  for (int64_t t = 0; t < T; ++t) {
    float* row = kv.data() + t * hd;
    rms_norm(row, w.kv_norm.data(), row, hd, c.rms_eps);
    ctx.rope.rotate(row + nope, first_position + t, false);
    if (ctx.official) fp8_simulate(row, nope, 64);
  }

  // Compressed rows (§6.4) and, in ratio-4 layers, the indexer's choice among them (§6.5).
  std::vector<int64_t> visible(static_cast<size_t>(T), 0);
  std::vector<std::vector<int64_t>> selected;
  if (ctx.ratio != 0) {
    int64_t before = state.compressor->n_rows();
    visible = run_compressor(ctx, *w.compressor, *state.compressor, first_position, x, T,
                             [&](float* row) {
                               if (ctx.official) fp8_simulate(row, nope, 64);
                             });
    if (commit && ctx.layer >= 0)
      counters.rows_emitted[ctx.layer] += state.compressor->n_rows() - before;
  }
  if (ctx.ratio == 4) {
    selected = indexer_select(ctx, state, counters, commit, first_position, x, qr_quant.data(), T);
  }

  // Sparse attention with sinks (§6.7) over window rows and compressed rows.
  Floats o(static_cast<size_t>(T * H * hd), 0.0f);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  ctx.pool.parallel_for(T * H, [&](int64_t begin, int64_t end) {
    std::vector<const float*> rows;
    Floats z, p;
    for (int64_t th = begin; th < end; ++th) {
      const int64_t t = th / H, h = th % H, pos = first_position + t;
      rows.clear();
      for (int64_t p_row = std::max<int64_t>(0, pos - W + 1); p_row <= pos; ++p_row) {
        rows.push_back(p_row >= first_position ? kv.data() + (p_row - first_position) * hd
                                               : state.window.data() + (p_row % W) * hd);
      }
      if (ctx.ratio == 4) {
        for (int64_t i : selected[t]) rows.push_back(state.compressor->row(i));
      } else if (ctx.ratio != 0) {
        for (int64_t i = 0; i < visible[t]; ++i) rows.push_back(state.compressor->row(i));
      }
      const float* qh = q.data() + (t * H + h) * hd;
      const int64_t n = static_cast<int64_t>(rows.size());
      z.resize(static_cast<size_t>(n));
      p.resize(static_cast<size_t>(n));
      for (int64_t j = 0; j < n; ++j) {
        float s = 0;
        for (int64_t d = 0; d < hd; ++d) s += qh[d] * rows[j][d];
        z[j] = s * scale;
      }
      softmax_with_sink(z.data(), n, w.sinks[h], p.data());
      float* oh = o.data() + (t * H + h) * hd;
      for (int64_t j = 0; j < n; ++j) {
        for (int64_t d = 0; d < hd; ++d) oh[d] += p[j] * rows[j][d];
      }
      ctx.rope.rotate(oh + nope, pos, /*inverse=*/true);
    }
  });

  // Grouped low-rank output projection (§6.8): each group's heads through its own rows of wo_a.
  const int64_t groups = c.o_groups, group_in = c.o_group_in(), rank = c.o_lora_rank;
  Floats u(static_cast<size_t>(T * group_in)), low(static_cast<size_t>(T * groups * rank));
  Floats low_g(static_cast<size_t>(T * rank));
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t t = 0; t < T; ++t) {
      const float* src = o.data() + t * H * hd + g * group_in;
      std::copy(src, src + group_in, u.begin() + t * group_in);
    }
    linear(ctx.pool, row_slice(w.out_a, g * rank, rank), u.data(), T, low_g.data());
    for (int64_t t = 0; t < T; ++t) {
      std::copy(low_g.begin() + t * rank, low_g.begin() + (t + 1) * rank,
                low.begin() + t * groups * rank + g * rank);
    }
  }
  act_quant_fp8(low.data(), T, groups * rank, ctx.official, low.data());
  linear(ctx.pool, w.out_b, low.data(), T, out);

  if (commit) {
    for (int64_t t = 0; t < T; ++t) {
      const int64_t pos = first_position + t;
      std::copy(kv.begin() + t * hd, kv.begin() + (t + 1) * hd,
                state.window.begin() + (pos % W) * hd);
      if (ctx.layer == 0 && pos >= W) ++counters.window_wraps;
    }
  }
}

}  // namespace magnetar::cpu
