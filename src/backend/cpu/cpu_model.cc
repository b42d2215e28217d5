#include "backend/cpu/cpu_model.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "backend/cpu/attention.h"
#include "backend/cpu/hyper_connections.h"
#include "backend/cpu/linear.h"
#include "backend/cpu/moe.h"

namespace magnetar::cpu {
namespace {

using Floats = std::vector<float>;

YarnParams yarn_of(const model::ModelConfig& c) {
  return {c.rope_scale_factor, c.rope_orig_ctx, c.yarn_beta_fast, c.yarn_beta_slow};
}

void rms_norm_rows(const float* x, const std::vector<float>& w, float* y, int64_t n, int64_t dim,
                   float eps) {
  for (int64_t t = 0; t < n; ++t) rms_norm(x + t * dim, w.data(), y + t * dim, dim, eps);
}

int64_t argmax(const float* v, int64_t n) {
  return std::max_element(v, v + n) - v;  // the first maximum: ties to the lower id
}

}  // namespace

CpuModel::CpuModel(const gguf::GgufFile& file, CpuOptions options)
    : config_(model::ModelConfig::from_metadata(file.metadata())),
      weights_(model::bind_weights(file, config_)),
      options_(options),
      pool_(options.threads),
      rope_window_(static_cast<int>(config_.rope_dim), config_.rope_base, std::nullopt),
      rope_compressed_(static_cast<int>(config_.rope_dim), config_.compress_rope_base,
                       yarn_of(config_)) {}

SequenceState CpuModel::new_sequence(bool with_mtp) const {
  return make_sequence_state(config_, with_mtp && has_mtp());
}

void CpuModel::forward(std::span<ForwardItem> items) {
  // Items run one after another; each one's matrix products use every core.
  for (ForwardItem& item : items) forward_item(item);
}

void CpuModel::run_block(const Block& b, LayerState& state, ForwardCounters& counters,
                         const int32_t* tokens, int64_t first, int64_t n, float* X, bool commit) {
  const model::ModelConfig& c = config_;
  const int64_t D = c.n_embd;
  const model::BlockWeights& w = *b.weights;
  Floats y(static_cast<size_t>(n * D)), f(y.size());
  HcMix mix;

  hc_pre(pool_, c, w.hc_attn, X, n, y.data(), mix);
  rms_norm_rows(y.data(), w.attn_norm, y.data(), n, D, c.rms_eps);
  AttentionContext actx{pool_, c, w, *b.rope, b.ratio, options_.official_numerics, b.layer};
  attention_chunk(actx, state, counters, first, y.data(), n, f.data(), commit);
  hc_post(c, mix, f.data(), n, X);

  hc_pre(pool_, c, w.hc_ffn, X, n, y.data(), mix);
  rms_norm_rows(y.data(), w.ffn_norm, y.data(), n, D, c.rms_eps);
  MoeContext mctx{pool_, c, w, b.swiglu_clamp, options_.official_numerics};
  moe_chunk(mctx, tokens, y.data(), n, f.data());
  hc_post(c, mix, f.data(), n, X);
}

void CpuModel::head(const model::WeightMatrix& hc_fn, const std::vector<float>& hc_scale,
                    const std::vector<float>& hc_base, const std::vector<float>& norm,
                    const float* X, int64_t n, float* logits) {
  const int64_t D = config_.n_embd;
  Floats y(static_cast<size_t>(n * D));
  hc_head(pool_, config_, hc_fn, hc_scale, hc_base, X, n, y.data());
  rms_norm_rows(y.data(), norm, y.data(), n, D, config_.rms_eps);
  linear(pool_, weights_.output, y.data(), n, logits);
}

void CpuModel::run_mtp(SequenceState& state, const float* Hs, const int32_t* next_tokens,
                       int64_t first, int64_t n, bool commit, float* logits) {
  const model::ModelConfig& c = config_;
  const model::MtpWeights& m = *weights_.mtp;
  const int64_t D = c.n_embd, hc = c.hc_count;
  // X0[h] = e_proj(norm(embed(τ'))) + h_proj(norm(Hs[h])) (model.md §9.1).
  Floats e(static_cast<size_t>(n * D)), hn(static_cast<size_t>(n * hc * D));
  for (int64_t i = 0; i < n; ++i) {
    model::decode_row(weights_.token_embd, next_tokens[i], e.data() + i * D);
  }
  rms_norm_rows(e.data(), m.enorm, e.data(), n, D, c.rms_eps);
  rms_norm_rows(Hs, m.hnorm, hn.data(), n * hc, D, c.rms_eps);
  act_quant_fp8(e.data(), n, D, options_.official_numerics, e.data());
  act_quant_fp8(hn.data(), n * hc, D, options_.official_numerics, hn.data());
  Floats pe(e.size()), X(hn.size());
  linear(pool_, m.e_proj, e.data(), n, pe.data());
  linear(pool_, m.h_proj, hn.data(), n * hc, X.data());
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t h = 0; h < hc; ++h) {
      for (int64_t d = 0; d < D; ++d) X[(i * hc + h) * D + d] += pe[i * D + d];
    }
  }
  const float clamp = c.swiglu_clamp.empty() ? 10.0f : c.swiglu_clamp.back();
  Block block{&m.block, 0, &rope_window_, clamp, -1};
  run_block(block, *state.mtp, state.counters, next_tokens, first, n, X.data(), commit);
  head(m.hc_head_fn, m.hc_head_scale, m.hc_head_base, m.norm, X.data(), n, logits);
}

void CpuModel::forward_item(ForwardItem& item) {
  const model::ModelConfig& c = config_;
  SequenceState& state = *item.state;
  const int64_t T = static_cast<int64_t>(item.tokens.size());
  const int64_t D = c.n_embd, hc = c.hc_count, V = c.n_vocab;
  if (T == 0) throw std::invalid_argument("forward: an item has no tokens");
  for (int32_t tok : item.tokens) {
    if (tok < 0 || tok >= static_cast<int32_t>(V)) {
      throw std::invalid_argument("token id " + std::to_string(tok) +
                                  " is outside the vocabulary (" + std::to_string(V) + " tokens)");
    }
  }
  if (item.mtp_logits && !state.mtp) {
    throw std::invalid_argument("MTP logits requested for a sequence without the MTP block");
  }
  const int64_t first = state.position;

  // Embedding, copied into every hyper-connection stream (§4).
  Floats X(static_cast<size_t>(T * hc * D));
  for (int64_t t = 0; t < T; ++t) {
    float* xt = X.data() + t * hc * D;
    model::decode_row(weights_.token_embd, item.tokens[t], xt);
    for (int64_t h = 1; h < hc; ++h) std::copy(xt, xt + D, xt + h * D);
  }
  for (uint32_t l = 0; l < c.n_layer; ++l) {
    const uint32_t ratio = c.ratio(l);
    Block block{&weights_.layers[l], ratio, ratio == 0 ? &rope_window_ : &rope_compressed_,
                c.swiglu_clamp[l], static_cast<int>(l)};
    run_block(block, state.layers[l], state.counters, item.tokens.data(), first, T, X.data(),
              /*commit=*/true);
  }

  const int64_t n_out = item.all_logits ? T : 1;
  item.logits.assign(static_cast<size_t>(n_out * V), 0.0f);
  const float* head_in = X.data() + (T - n_out) * hc * D;
  head(weights_.output_hc_fn, weights_.output_hc_scale, weights_.output_hc_base,
       weights_.output_norm, head_in, n_out, item.logits.data());
  state.position += T;

  if (!state.mtp) return;
  // The MTP block at position p needs the token of p + 1, so it completes the previous call's
  // last position and this chunk's positions but the last, which gets a draft evaluation with
  // the argmax token and stays pending until its real successor arrives.
  const int64_t pending = state.mtp_pending_hidden.empty() ? 0 : 1;
  const int64_t n_commit = pending + T - 1;
  Floats hs(static_cast<size_t>(n_commit * hc * D));
  std::vector<int32_t> next(static_cast<size_t>(n_commit));
  if (pending)
    std::copy(state.mtp_pending_hidden.begin(), state.mtp_pending_hidden.end(), hs.begin());
  std::copy(X.begin(), X.begin() + (T - 1) * hc * D, hs.begin() + pending * hc * D);
  for (int64_t i = 0; i < n_commit; ++i) next[i] = item.tokens[i + 1 - pending];
  Floats committed(static_cast<size_t>(n_commit * V));
  if (n_commit > 0) {
    run_mtp(state, hs.data(), next.data(), first - pending, n_commit, /*commit=*/true,
            committed.data());
  }
  const float* last_logits = item.logits.data() + (n_out - 1) * V;
  const int32_t draft_token = static_cast<int32_t>(argmax(last_logits, V));
  const float* last_state = X.data() + (T - 1) * hc * D;
  Floats draft(static_cast<size_t>(V));
  run_mtp(state, last_state, &draft_token, first + T - 1, 1, /*commit=*/false, draft.data());
  state.mtp_pending_hidden.assign(last_state, last_state + hc * D);
  if (item.mtp_logits) {
    item.mtp = std::move(committed);
    item.mtp.insert(item.mtp.end(), draft.begin(), draft.end());
    item.mtp_first_position = first - pending;
  }
}

}  // namespace magnetar::cpu
