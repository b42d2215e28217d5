#include "backend/cpu/sequence_state.h"

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace magnetar::cpu {
namespace {

CompressorState make_compressor(uint32_t ratio, uint32_t head_width) {
  CompressorState s;
  s.ratio = ratio;
  s.head_width = head_width;
  s.width = (ratio == 4 ? 2 : 1) * head_width;
  s.kv.assign(static_cast<size_t>(ratio) * s.width, 0.0f);
  s.score.assign(s.kv.size(), 0.0f);
  if (ratio == 4) {
    s.prev_kv.assign(s.kv.size(), 0.0f);
    s.prev_score.assign(s.kv.size(), -std::numeric_limits<float>::infinity());
  }
  return s;
}

LayerState make_layer(const model::ModelConfig& c, uint32_t ratio) {
  LayerState s;
  s.window.assign(static_cast<size_t>(c.sliding_window) * c.head_dim, 0.0f);
  if (ratio != 0) s.compressor = make_compressor(ratio, c.head_dim);
  if (ratio == 4) s.indexer = make_compressor(4, c.indexer_head_dim);
  return s;
}

}  // namespace

SequenceState make_sequence_state(const model::ModelConfig& c, bool with_mtp) {
  SequenceState s;
  for (uint32_t l = 0; l < c.n_layer; ++l) s.layers.push_back(make_layer(c, c.ratio(l)));
  if (with_mtp) s.mtp = make_layer(c, 0);
  s.counters.rows_emitted.assign(c.n_layer, 0);
  return s;
}

namespace {

void expect(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument("sequence state does not fit the model: " + what);
}

void check_compressor(const std::optional<CompressorState>& got, uint32_t ratio, uint32_t c,
                      int64_t position, const std::string& where) {
  expect(got.has_value() == (ratio != 0), where + " compressor presence");
  if (!got) return;
  const CompressorState want = make_compressor(ratio, c);
  expect(got->ratio == want.ratio && got->width == want.width && got->head_width == c,
         where + " compressor dimensions");
  expect(got->kv.size() == want.kv.size() && got->score.size() == want.score.size() &&
             got->prev_kv.size() == want.prev_kv.size() &&
             got->prev_score.size() == want.prev_score.size(),
         where + " compressor block sizes");
  expect(got->rows.size() == static_cast<size_t>(position / ratio) * c,
         where + " compressed row count");
}

void check_layer(const model::ModelConfig& c, const LayerState& l, uint32_t ratio, int64_t position,
                 const std::string& where) {
  expect(l.window.size() == static_cast<size_t>(c.sliding_window) * c.head_dim,
         where + " window size");
  check_compressor(l.compressor, ratio, c.head_dim, position, where + " attention");
  check_compressor(l.indexer, ratio == 4 ? 4 : 0, c.indexer_head_dim, position, where + " indexer");
}

}  // namespace

void check_sequence_state(const model::ModelConfig& c, const SequenceState& s) {
  expect(s.position >= 0, "negative position");
  expect(s.layers.size() == c.n_layer, "layer count " + std::to_string(s.layers.size()) +
                                           ", model has " + std::to_string(c.n_layer));
  for (uint32_t l = 0; l < c.n_layer; ++l) {
    check_layer(c, s.layers[l], c.ratio(l), s.position, "layer " + std::to_string(l));
  }
  if (s.mtp) check_layer(c, *s.mtp, 0, s.position, "MTP block");
  expect(s.mtp_pending_hidden.empty() ||
             s.mtp_pending_hidden.size() == static_cast<size_t>(c.hc_dim()),
         "MTP pending state size");
  expect(s.counters.rows_emitted.size() == c.n_layer, "counter sizes");
}

bool compressor_push(CompressorState& s, int64_t position, const float* kv, const float* score,
                     float* pooled) {
  const int64_t r = s.ratio, w = s.width, c = s.head_width;
  const int64_t slot = position % r;
  std::copy(kv, kv + w, s.kv.begin() + slot * w);
  std::copy(score, score + w, s.score.begin() + slot * w);
  if (slot != r - 1) return false;
  // Pool each channel d with a softmax over the candidate tokens. Ratio 4 overlaps two windows:
  // the previous block through the first-half columns, this block through the second half.
  const bool overlap = r == 4;
  const int64_t own = overlap ? c : 0;  // column offset of this block's candidates
  for (int64_t d = 0; d < c; ++d) {
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < r; ++i) m = std::max(m, s.score[i * w + own + d]);
    if (overlap) {
      for (int64_t i = 0; i < r; ++i) m = std::max(m, s.prev_score[i * w + d]);
    }
    float den = 0, num = 0;
    for (int64_t i = 0; i < r; ++i) {
      float e = std::exp(s.score[i * w + own + d] - m);
      den += e;
      num += e * s.kv[i * w + own + d];
    }
    if (overlap) {
      for (int64_t i = 0; i < r; ++i) {
        float e = std::exp(s.prev_score[i * w + d] - m);  // exp(-inf) = 0 before block 1
        den += e;
        num += e * s.prev_kv[i * w + d];
      }
    }
    pooled[d] = num / den;
  }
  if (overlap) {
    s.prev_kv.swap(s.kv);
    s.prev_score.swap(s.score);
  }
  return true;
}

}  // namespace magnetar::cpu
