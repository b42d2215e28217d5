#include "synth/weight_init.h"

#include <array>
#include <cmath>
#include <cstring>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>

#include "quant/quant.h"
#include "synth/random.h"

namespace magnetar::synth {
namespace {

using model::WeightClass;
using quant::GgmlType;

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Elements per chunk of a 1-D/2-D tensor: 4 MB of float32, enough to amortize a pwrite and small
// enough that 16 threads spread even the embedding table evenly.
constexpr int64_t kChunkElements = int64_t{1} << 20;

void put_f16(float value, uint8_t* dst) { quant::quantize_row(GgmlType::kF16, &value, dst, 1); }

// Random-code blocks: every field filled with random bits, then the super-block scales set so the
// decoded values have zero mean and RMS `rms_per_unit_d` per unit of d. For the K-quants the
// minimum term must cancel the mean of scale*code: with uniform codes E[sc*q] = E[sc]*E[q] and
// E[m] = E[sc], so dmin = E[q] * d (Q2_K: codes 0..3, E = 1.5; Q4_K: 0..15, E = 7.5).
struct CodeLayout {
  size_t d_offset;
  std::optional<size_t> dmin_offset;
  float dmin_per_d;
};

std::optional<CodeLayout> code_layout(GgmlType type) {
  switch (type) {
    case GgmlType::kQ8_0:
      return CodeLayout{0, std::nullopt, 0.0f};
    case GgmlType::kQ2_K:
      return CodeLayout{80, 82, 1.5f};
    case GgmlType::kQ4_K:
      return CodeLayout{0, 2, 7.5f};
    case GgmlType::kIQ2_XXS:
      return CodeLayout{0, std::nullopt, 0.0f};
    default:
      return std::nullopt;
  }
}

void fill_random_blocks(GgmlType type, float d, Rng& rng, uint8_t* dst, int64_t n_blocks) {
  const CodeLayout layout = *code_layout(type);
  const int64_t block_bytes = quant::type_info(type).block_bytes;
  const int64_t total = n_blocks * block_bytes;
  int64_t i = 0;
  for (; i + 8 <= total; i += 8) {
    uint64_t r = rng.next();
    std::memcpy(dst + i, &r, 8);
  }
  for (uint64_t r = rng.next(); i < total; ++i, r >>= 8) dst[i] = static_cast<uint8_t>(r);
  uint8_t d_bits[2], dmin_bits[2];
  put_f16(d, d_bits);
  put_f16(d * layout.dmin_per_d, dmin_bits);
  for (int64_t b = 0; b < n_blocks; ++b) {
    uint8_t* block = dst + b * block_bytes;
    std::memcpy(block + layout.d_offset, d_bits, 2);
    if (layout.dmin_offset) std::memcpy(block + *layout.dmin_offset, dmin_bits, 2);
  }
}

// RMS of decoded random-code blocks made with d = 1, measured once per type with the real
// decoder, so that d = stddev / rms gives the wanted spread without hand-derived constants.
float unit_rms(GgmlType type) {
  static std::once_flag once[40];
  static float rms[40];
  size_t slot = static_cast<size_t>(type);
  std::call_once(once[slot], [&] {
    constexpr int64_t kBlocks = 512;
    const int64_t elems = quant::type_info(type).block_elems * kBlocks;
    std::vector<uint8_t> blocks(static_cast<size_t>(quant::type_info(type).block_bytes * kBlocks));
    std::vector<float> values(static_cast<size_t>(elems));
    Rng rng(0x5EEDCA1B);
    fill_random_blocks(type, 1.0f, rng, blocks.data(), kBlocks);
    quant::dequantize_row(type, blocks.data(), values.data(), elems);
    double sum = 0;
    for (float v : values) sum += static_cast<double>(v) * v;
    rms[slot] = static_cast<float>(std::sqrt(sum / static_cast<double>(elems)));
  });
  return rms[slot];
}

void fill_token_map(const ChunkRequest& r, Rng& rng, uint8_t* dst) {
  const int64_t per_row = r.tensor->ne[0];
  const int64_t n_expert = static_cast<int64_t>(r.dist.stddev);
  auto* out = reinterpret_cast<int32_t*>(dst);
  for (int64_t row = 0; row < r.chunk.n_rows; ++row) {
    int32_t* ids = out + row * per_row;
    for (int64_t k = 0; k < per_row; ++k) {
      int32_t e;
      bool taken;
      do {  // distinct experts per token; per_row <= n_expert is guaranteed by the config
        e = static_cast<int32_t>(rng.below(static_cast<uint64_t>(n_expert)));
        taken = false;
        for (int64_t j = 0; j < k; ++j) taken |= ids[j] == e;
      } while (taken);
      ids[k] = e;
    }
  }
}

}  // namespace

Distribution distribution_for(const model::ExpectedTensor& t, const model::ModelConfig& c) {
  const std::string& n = t.name;
  if (t.cls == WeightClass::kTokenMap) {
    // For the token map, stddev carries the number of experts to draw from.
    return {Distribution::Kind::kTokenMap, 0.0f, static_cast<float>(c.n_expert)};
  }
  if (t.cls == WeightClass::kVector) {
    if (ends_with(n, "norm.weight")) return {Distribution::Kind::kNormal, 1.0f, 0.05f};
    if (ends_with(n, "_scale.weight")) return {Distribution::Kind::kNormal, 0.5f, 0.1f};
    if (ends_with(n, "_base.weight")) return {Distribution::Kind::kNormal, 0.0f, 0.5f};
    if (ends_with(n, "attn_sinks.weight")) return {Distribution::Kind::kNormal, 0.0f, 1.0f};
    return {Distribution::Kind::kNormal, 0.0f, 0.05f};  // router bias
  }
  if (n == "token_embd.weight") return {Distribution::Kind::kNormal, 0.0f, 1.0f};
  if (ends_with(n, "compressor_ape.weight")) return {Distribution::Kind::kNormal, 0.0f, 0.5f};
  float stddev = 1.0f / std::sqrt(static_cast<float>(t.ne[0]));
  // Projections that write into the residual stream are damped so that 43+ layers of random
  // updates do not grow the hidden state by orders of magnitude.
  if (ends_with(n, "attn_output_b.weight") || ends_with(n, "ffn_down_exps.weight") ||
      ends_with(n, "ffn_down_shexp.weight")) {
    stddev *= 0.5f;
  }
  return {Distribution::Kind::kNormal, 0.0f, stddev};
}

std::vector<Chunk> split_into_chunks(size_t tensor, const std::vector<int64_t>& ne) {
  int64_t rows = 1;
  for (size_t i = 1; i < ne.size(); ++i) rows *= ne[i];
  int64_t rows_per_chunk =
      ne.size() >= 3 ? ne[1] : std::max<int64_t>(1, kChunkElements / std::max<int64_t>(1, ne[0]));
  std::vector<Chunk> chunks;
  uint64_t index = 0;
  for (int64_t r = 0; r < rows; r += rows_per_chunk) {
    chunks.push_back({tensor, r, std::min(rows_per_chunk, rows - r), index++});
  }
  return chunks;
}

void generate_chunk(const ChunkRequest& r, std::vector<uint8_t>& out, std::vector<float>& scratch) {
  const int64_t row_len = r.tensor->ne[0];
  const int64_t n_values = row_len * r.chunk.n_rows;
  const int64_t row_bytes = quant::row_bytes(r.type, row_len);
  out.resize(static_cast<size_t>(row_bytes * r.chunk.n_rows));
  Rng rng(r.seed, hash_name(r.tensor->name), r.chunk.index);

  if (r.dist.kind == Distribution::Kind::kTokenMap) {
    fill_token_map(r, rng, out.data());
    return;
  }
  if (r.encoding == Encoding::kRandomCodes && code_layout(r.type)) {
    int64_t n_blocks = n_values / quant::type_info(r.type).block_elems;
    fill_random_blocks(r.type, r.dist.stddev / unit_rms(r.type), rng, out.data(), n_blocks);
    return;
  }
  scratch.resize(static_cast<size_t>(n_values));
  if (r.encoding == Encoding::kExact) {
    for (float& v : scratch) v = r.dist.mean + r.dist.stddev * static_cast<float>(rng.normal());
  } else {
    // Uniform with the same mean and variance: a normal deviate costs a log and a cosine, and
    // fast mode writes gigabytes of F16 embedding.
    const float half_width = r.dist.stddev * std::sqrt(3.0f);
    for (float& v : scratch) {
      v = r.dist.mean + half_width * static_cast<float>(2.0 * rng.uniform() - 1.0);
    }
  }
  if (r.type == GgmlType::kF32) {
    std::memcpy(out.data(), scratch.data(), out.size());
  } else if (r.tensor->ne.size() >= 3) {
    // One whole expert: matrix-level quantization (IQ2_XXS derives its importance from it).
    quant::quantize_matrix(r.type, scratch.data(), out.data(), r.chunk.n_rows, row_len);
  } else {
    for (int64_t row = 0; row < r.chunk.n_rows; ++row) {
      quant::quantize_row(r.type, scratch.data() + row * row_len, out.data() + row * row_bytes,
                          row_len);
    }
  }
}

}  // namespace magnetar::synth
