#include "backend/cuda/cuda_sequence_state.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

namespace magnetar::gpu {
namespace {

DeviceCompressorState make_compressor(uint32_t ratio, uint32_t head_width) {
  DeviceCompressorState s;
  s.ratio = ratio;
  s.head_width = head_width;
  s.width = (ratio == 4 ? 2 : 1) * head_width;
  const size_t block = s.block_floats();
  std::vector<float> zeros(block * s.buffers(), 0.0f);
  s.kv = DeviceArray<float>(std::span<const float>(zeros));
  // Buffer 1 of a ratio-4 compressor is the CPU's initial "previous" block: scores -inf, so that
  // block 0 pools only its own tokens.
  std::vector<float> score = zeros;
  if (ratio == 4) {
    std::fill(score.begin() + block, score.end(), -std::numeric_limits<float>::infinity());
  }
  s.score = DeviceArray<float>(std::span<const float>(score));
  return s;
}

DeviceLayerState make_layer(const StateLayout& layout, uint32_t ratio) {
  const model::ModelConfig& c = layout.config;
  DeviceLayerState s;
  s.window = DeviceArray<uint8_t>(static_cast<size_t>(c.sliding_window) * layout.kv.row_bytes());
  // All-zero bytes decode to +0 in both row formats, the CPU's initial window.
  MAGNETAR_CUDA_CHECK(cudaMemset(s.window.data(), 0, s.window.bytes()));
  if (ratio != 0) s.compressor = make_compressor(ratio, c.head_dim);
  if (ratio == 4) s.indexer = make_compressor(4, c.indexer_head_dim);
  return s;
}

// Encodes rows of codec.dims floats, checking that each decodes to exactly the input bits.
std::vector<uint8_t> encode_rows(const RowCodec& codec, const std::vector<float>& values,
                                 const std::string& where) {
  const size_t n = values.size() / codec.dims, rb = codec.row_bytes();
  std::vector<uint8_t> out(n * rb, 0);
  for (size_t r = 0; r < n; ++r) {
    const float* row = values.data() + r * codec.dims;
    uint8_t* dst = out.data() + r * rb;
    codec.encode(row, dst);
    for (int32_t d = 0; d < codec.dims; ++d) {
      if (float_bits(codec.value(dst, d)) != float_bits(row[d])) {
        throw std::invalid_argument("sequence state does not fit the CUDA backend: " + where +
                                    " row " + std::to_string(r) +
                                    " is not on the FP8/FP4 grid of the official numerics (a state "
                                    "computed with plain numerics?)");
      }
    }
  }
  return out;
}

std::vector<float> decode_rows(const RowCodec& codec, const std::vector<uint8_t>& bytes, size_t n) {
  std::vector<float> out(n * codec.dims);
  const size_t rb = codec.row_bytes();
  for (size_t r = 0; r < n; ++r) {
    for (int32_t d = 0; d < codec.dims; ++d)
      out[r * codec.dims + d] = codec.value(&bytes[r * rb], d);
  }
  return out;
}

void grow_rows(DeviceCompressorState& s, const RowCodec& codec, int64_t needed, int64_t limit) {
  if (needed <= s.row_capacity) return;
  if (needed > limit) throw std::logic_error("compressed rows beyond the context");
  const int64_t capacity = std::min(limit, std::max({needed, 2 * s.row_capacity, int64_t{16}}));
  DeviceArray<uint8_t> rows(static_cast<size_t>(capacity) * codec.row_bytes());
  if (s.row_capacity > 0) {
    MAGNETAR_CUDA_CHECK(cudaMemcpy(rows.data(), s.rows.data(),
                                   static_cast<size_t>(s.row_capacity) * codec.row_bytes(),
                                   cudaMemcpyDeviceToDevice));
  }
  s.rows = std::move(rows);
  s.row_capacity = capacity;
}

// The CPU's current and previous blocks from the device buffers (see the header).
void export_compressor(const DeviceCompressorState& d, const RowCodec& codec, int64_t position,
                       cpu::CompressorState& out) {
  out.ratio = d.ratio;
  out.width = d.width;
  out.head_width = d.head_width;
  const std::vector<float> kv = d.kv.download(), score = d.score.download();
  const size_t block = d.block_floats();
  const size_t cur = d.ratio == 4 ? static_cast<size_t>((position / 4) % 2) : 0;
  out.kv.assign(kv.begin() + cur * block, kv.begin() + (cur + 1) * block);
  out.score.assign(score.begin() + cur * block, score.begin() + (cur + 1) * block);
  if (d.ratio == 4) {
    const size_t prev = 1 - cur;
    out.prev_kv.assign(kv.begin() + prev * block, kv.begin() + (prev + 1) * block);
    out.prev_score.assign(score.begin() + prev * block, score.begin() + (prev + 1) * block);
  }
  const size_t n_rows = static_cast<size_t>(position / d.ratio);
  out.rows = decode_rows(codec, d.rows.download(n_rows * codec.row_bytes()), n_rows);
}

void import_compressor(const cpu::CompressorState& s, const RowCodec& codec, int64_t position,
                       int64_t context, const std::string& where, DeviceCompressorState& d) {
  const size_t block = d.block_floats();
  std::vector<float> kv(block * d.buffers()), score(kv.size());
  const size_t cur = d.ratio == 4 ? static_cast<size_t>((position / 4) % 2) : 0;
  std::copy(s.kv.begin(), s.kv.end(), kv.begin() + cur * block);
  std::copy(s.score.begin(), s.score.end(), score.begin() + cur * block);
  if (d.ratio == 4) {
    const size_t prev = 1 - cur;
    std::copy(s.prev_kv.begin(), s.prev_kv.end(), kv.begin() + prev * block);
    std::copy(s.prev_score.begin(), s.prev_score.end(), score.begin() + prev * block);
  }
  d.kv.upload(kv);
  d.score.upload(score);
  const std::vector<uint8_t> rows = encode_rows(codec, s.rows, where);
  grow_rows(d, codec, position / d.ratio, (context + d.ratio - 1) / d.ratio);
  d.rows.upload(rows);
}

int64_t count_from(int64_t begin, int64_t end, int64_t threshold) {
  return std::max<int64_t>(0, end - std::max(begin, threshold));
}

}  // namespace

DeviceSequenceState::DeviceSequenceState(std::shared_ptr<const StateLayout> layout, bool mtp)
    : layout_(std::move(layout)) {
  const model::ModelConfig& c = layout_->config;
  for (uint32_t l = 0; l < c.n_layer; ++l) layers_.push_back(make_layer(*layout_, c.ratio(l)));
  counters_.rows_emitted.assign(c.n_layer, 0);
  if (mtp) {
    if (!layout_->has_mtp) throw std::invalid_argument("the model has no MTP block (mtp.0.*)");
    mtp_ = make_layer(*layout_, 0);
    mtp_pending_ = DeviceArray<float>(static_cast<size_t>(c.hc_count) * c.n_embd);
  }
}

DeviceSequenceState DeviceSequenceState::from_cpu(std::shared_ptr<const StateLayout> layout,
                                                  const cpu::SequenceState& s) {
  const model::ModelConfig& c = layout->config;
  cpu::check_sequence_state(c, s);
  if ((s.mtp || !s.mtp_pending_hidden.empty()) && !layout->has_mtp) {
    throw std::invalid_argument(
        "sequence state does not fit the model: it holds MTP state, and the model has no MTP "
        "block");
  }
  const size_t hidden = static_cast<size_t>(c.hc_count) * c.n_embd;
  if (!s.mtp_pending_hidden.empty() && (!s.mtp || s.mtp_pending_hidden.size() != hidden)) {
    throw std::invalid_argument("sequence state: the MTP pending state has " +
                                std::to_string(s.mtp_pending_hidden.size()) + " values, not " +
                                std::to_string(hidden));
  }
  if (s.position > layout->context) {
    throw std::invalid_argument("sequence state of " + std::to_string(s.position) +
                                " tokens does not fit the context of " +
                                std::to_string(layout->context) + " tokens");
  }
  DeviceSequenceState d(layout, s.mtp.has_value());
  if (s.mtp) {
    d.mtp_->window.upload(encode_rows(layout->kv, s.mtp->window, "MTP window"));
    if (!s.mtp_pending_hidden.empty()) {
      d.mtp_pending_.upload(s.mtp_pending_hidden);
      d.mtp_pending_set_ = true;
    }
  }
  for (uint32_t l = 0; l < c.n_layer; ++l) {
    const cpu::LayerState& src = s.layers[l];
    DeviceLayerState& dst = d.layers_[l];
    const std::string where = "layer " + std::to_string(l);
    dst.window.upload(encode_rows(layout->kv, src.window, where + " window"));
    if (dst.compressor) {
      import_compressor(*src.compressor, layout->kv, s.position, layout->context,
                        where + " compressed", *dst.compressor);
    }
    if (dst.indexer) {
      import_compressor(*src.indexer, layout->indexer, s.position, layout->context,
                        where + " indexer", *dst.indexer);
    }
  }
  d.position_ = s.position;
  d.counters_ = s.counters;
  return d;
}

cpu::SequenceState DeviceSequenceState::to_cpu() const {
  const model::ModelConfig& c = layout_->config;
  cpu::SequenceState s;
  s.position = position_;
  s.counters = counters_;
  for (uint32_t l = 0; l < c.n_layer; ++l) {
    const DeviceLayerState& src = layers_[l];
    cpu::LayerState& dst = s.layers.emplace_back();
    dst.window = decode_rows(layout_->kv, src.window.download(), c.sliding_window);
    if (src.compressor) {
      export_compressor(*src.compressor, layout_->kv, position_, dst.compressor.emplace());
    }
    if (src.indexer) {
      export_compressor(*src.indexer, layout_->indexer, position_, dst.indexer.emplace());
    }
  }
  if (mtp_) {
    s.mtp.emplace().window = decode_rows(layout_->kv, mtp_->window.download(), c.sliding_window);
    if (mtp_pending_set_) s.mtp_pending_hidden = mtp_pending_.download();
  }
  return s;
}

DeviceSequenceState DeviceSequenceState::clone() const {
  DeviceSequenceState d;
  d.layout_ = layout_;
  d.position_ = position_;
  d.counters_ = counters_;
  if (mtp_) {
    d.mtp_.emplace().window = mtp_->window.clone();
    d.mtp_pending_ = mtp_pending_.clone();
    d.mtp_pending_set_ = mtp_pending_set_;
  }
  for (const DeviceLayerState& src : layers_) {
    DeviceLayerState& dst = d.layers_.emplace_back();
    dst.window = src.window.clone();
    for (auto [from, to] :
         {std::pair{&src.compressor, &dst.compressor}, std::pair{&src.indexer, &dst.indexer}}) {
      if (!*from) continue;
      DeviceCompressorState& c = to->emplace();
      c.ratio = (*from)->ratio;
      c.width = (*from)->width;
      c.head_width = (*from)->head_width;
      c.kv = (*from)->kv.clone();
      c.score = (*from)->score.clone();
      c.rows = (*from)->rows.clone();
      c.row_capacity = (*from)->row_capacity;
    }
  }
  return d;
}

void DeviceSequenceState::reserve(int64_t end) {
  const int64_t context = layout_->context;
  for (DeviceLayerState& l : layers_) {
    if (l.compressor) {
      const int64_t r = l.compressor->ratio;
      grow_rows(*l.compressor, layout_->kv, end / r, (context + r - 1) / r);
    }
    if (l.indexer) grow_rows(*l.indexer, layout_->indexer, end / 4, (context + 3) / 4);
  }
}

void DeviceSequenceState::advance(int64_t n) {
  const model::ModelConfig& c = layout_->config;
  const int64_t first = position_, end = position_ + n;
  counters_.window_wraps += count_from(first, end, c.sliding_window);
  for (uint32_t l = 0; l < c.n_layer; ++l) {
    const int64_t r = c.ratio(l);
    if (r == 0) continue;
    counters_.rows_emitted[l] += end / r - first / r;
    // A ratio-4 query at position p sees (p + 1) / 4 rows; the indexer drops some once that
    // exceeds top_k, i.e. from p = 4 · top_k + 3 on.
    if (r == 4)
      counters_.indexer_partial_selections +=
          count_from(first, end, 4 * int64_t{c.indexer_top_k} + 3);
  }
  position_ = end;
}

}  // namespace magnetar::gpu
