#include "backend/cuda/synthetic_weights.h"

#include <sys/mman.h>

#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/random_fill.cuh"
#include "quant/blocks.h"
#include "quant/fp16.h"
#include "quant/quant.h"
#include "synth/random.h"
#include "synth/weight_init.h"

namespace magnetar::gpu {
namespace {

using model::ExpectedTensor;
using model::WeightClass;
using quant::GgmlType;

constexpr double kMiB = 1024.0 * 1024.0;

// Where a quantized block keeps its scales, and the minimum scale that centres random codes. For
// the K-quants, value = d·sc·q − dmin·m with sc, m and q uniform random codes; E[sc] = E[m], so
// dmin = E[q]·d gives zero mean (Q2_K: q in 0..3, E = 1.5; Q4_K: q in 0..15, E = 7.5). These are
// the choices of synth's random-codes encoding.
struct ScaleLayout {
  int d_offset;
  int dmin_offset;  // -1: none
  float dmin_per_d;
};

std::optional<ScaleLayout> scale_layout(GgmlType type) {
  switch (type) {
    case GgmlType::kQ8_0:
      return ScaleLayout{offsetof(quant::BlockQ8_0, d), -1, 0.0f};
    case GgmlType::kQ2_K:
      return ScaleLayout{offsetof(quant::BlockQ2_K, d), offsetof(quant::BlockQ2_K, dmin), 1.5f};
    case GgmlType::kQ4_K:
      return ScaleLayout{offsetof(quant::BlockQ4_K, d), offsetof(quant::BlockQ4_K, dmin), 7.5f};
    case GgmlType::kIQ2_XXS:
      return ScaleLayout{offsetof(quant::BlockIQ2_XXS, d), -1, 0.0f};
    default:
      return std::nullopt;
  }
}

// Random blocks of `type` with block scale d.
void fill_blocks(GgmlType type, uint8_t* dst, int64_t n_blocks, float d, uint64_t seed,
                 uint64_t stream) {
  const ScaleLayout layout = *scale_layout(type);
  const int block_bytes = static_cast<int>(quant::type_info(type).block_bytes);
  fill_random_bits_cuda(dst, static_cast<size_t>(n_blocks * block_bytes), seed, stream, nullptr);
  set_block_scales_cuda(dst, n_blocks, block_bytes, layout.d_offset, quant::f32_to_f16(d),
                        layout.dmin_offset, quant::f32_to_f16(d * layout.dmin_per_d), nullptr);
}

// RMS of the decoded values of random blocks made with d = 1, measured on a sample of blocks made
// by the device generator and decoded by the CPU's decoder; d = stddev / unit_rms then gives the
// wanted spread.
float unit_rms(GgmlType type) {
  static std::map<GgmlType, float> cache;
  if (auto it = cache.find(type); it != cache.end()) return it->second;
  constexpr int64_t kBlocks = 512;
  const quant::TypeInfo& info = quant::type_info(type);
  DeviceArray<uint8_t> sample(static_cast<size_t>(kBlocks * info.block_bytes));
  fill_blocks(type, sample.data(), kBlocks, 1.0f, 0x5EEDCA1B, 0);
  const std::vector<uint8_t> bytes = sample.download();
  std::vector<float> values(static_cast<size_t>(kBlocks * info.block_elems));
  quant::dequantize_row(type, bytes.data(), values.data(), static_cast<int64_t>(values.size()));
  double sum = 0;
  for (float v : values) sum += static_cast<double>(v) * v;
  const float rms = static_cast<float>(std::sqrt(sum / static_cast<double>(values.size())));
  cache.emplace(type, rms);
  return rms;
}

// Fills `bytes` of device memory at `dst` with `rows` rows of `cols` values of `type`.
void fill_tensor(GgmlType type, uint8_t* dst, int64_t cols, int64_t rows, float mean, float stddev,
                 uint64_t seed, uint64_t stream) {
  const int64_t n = cols * rows;
  switch (type) {
    case GgmlType::kF32:
    case GgmlType::kF16:
      // Uniform with the wanted mean and variance, as synth's random-codes encoding does.
      fill_uniform_cuda(dst, n, type == GgmlType::kF16, mean, stddev * std::sqrt(3.0f), seed,
                        stream, nullptr);
      return;
    default:
      break;
  }
  if (!scale_layout(type)) {
    throw std::invalid_argument("synthetic weights: no generator for type " +
                                std::string(quant::type_name(type)));
  }
  if (mean != 0.0f) {
    throw std::invalid_argument("synthetic weights: quantized tensors are centred on zero");
  }
  fill_blocks(type, dst, n / quant::type_info(type).block_elems, stddev / unit_rms(type), seed,
              stream);
}

size_t tensor_bytes(const ExpectedTensor& t, GgmlType type) {
  int64_t rows = 1;
  for (size_t i = 1; i < t.ne.size(); ++i) rows *= t.ne[i];
  return static_cast<size_t>(quant::row_bytes(type, t.ne[0]) * rows);
}

// The tensors of the main model as synth would write them (optional ones left out, as synth does).
std::vector<ExpectedTensor> inventory(const model::ModelConfig& config) {
  std::vector<ExpectedTensor> out;
  for (ExpectedTensor& t : model::model_tensors(config, /*with_mtp=*/false)) {
    if (!t.optional) out.push_back(std::move(t));
  }
  return out;
}

bool is_routed_expert(const ExpectedTensor& t) {
  return t.cls == WeightClass::kExpertGateUp || t.cls == WeightClass::kExpertDown;
}

// Makes tensors by name, in the order the binder asks for them, and reports progress.
class Generator {
 public:
  Generator(const model::ModelConfig& config, const SyntheticSpec& spec, bool experts_on_host,
            bool progress, SyntheticWeights& out)
      : config_(config),
        spec_(spec),
        experts_on_host_(experts_on_host),
        progress_(progress),
        out_(out) {
    out_.tensors = inventory(config);
    for (const ExpectedTensor& t : out_.tensors) {
      index_.emplace(t.name, &t);
      if (t.cls != WeightClass::kVector && t.cls != WeightClass::kTokenMap) {
        total_ += tensor_bytes(t, type_of(t));
      }
      if (is_routed_expert(t))
        staging_bytes_ = std::max(staging_bytes_, tensor_bytes(t, type_of(t)));
    }
  }

  ~Generator() {
    if (progress_ && printed_) std::fputc('\n', stderr);
  }

  model::WeightMatrix matrix(const std::string& name) {
    const ExpectedTensor& t = find(name);
    model::WeightMatrix m = shape(t);
    const size_t bytes = tensor_bytes(t, m.type);
    const Distribution d = synth::distribution_for(t, config_);
    if (is_routed_expert(t) && experts_on_host_) {
      // Made on the device one tensor at a time and copied out, so the device never holds more
      // than the largest expert tensor of them.
      if (staging_.size() < bytes) staging_ = DeviceArray<uint8_t>(staging_bytes_);
      fill_tensor(m.type, staging_.data(), m.cols, m.rows * m.experts, d.mean, d.stddev, spec_.seed,
                  synth::hash_name(t.name));
      HostBuffer& host = out_.host_experts.emplace_back(bytes);
      MAGNETAR_CUDA_CHECK(cudaMemcpy(host.data(), staging_.data(), bytes, cudaMemcpyDeviceToHost));
      m.data = host.data();
    } else {
      DeviceArray<uint8_t>& a = out_.device.emplace_back(bytes);
      fill_tensor(m.type, a.data(), m.cols, m.rows * m.experts, d.mean, d.stddev, spec_.seed,
                  synth::hash_name(t.name));
      m.data = a.data();
    }
    out_.placed.push_back({&t, m.type, m.data, bytes, !(is_routed_expert(t) && experts_on_host_)});
    done_ += bytes;
    report();
    return m;
  }

  // Small tensors decoded to float on the host by bind_weights: made on the host with synth's own
  // generator (a few kilobytes each).
  std::vector<float> vector(const std::string& name) {
    const ExpectedTensor& t = find(name);
    const std::vector<uint8_t> bytes = host_chunk(t, GgmlType::kF32);
    std::vector<float>& v = out_.vectors.emplace_back(bytes.size() / sizeof(float));
    std::memcpy(v.data(), bytes.data(), bytes.size());
    out_.placed.push_back(
        {&t, GgmlType::kF32, reinterpret_cast<const uint8_t*>(v.data()), bytes.size(), false});
    return v;
  }

  // The hash-routing table: distinct experts per token, as synth makes it.
  const int32_t* token_map(const std::string& name) {
    const ExpectedTensor& t = find(name);
    const std::vector<uint8_t> bytes = host_chunk(t, GgmlType::kI32);
    std::vector<int32_t>& ids = out_.token_maps.emplace_back(bytes.size() / sizeof(int32_t));
    std::memcpy(ids.data(), bytes.data(), bytes.size());
    out_.placed.push_back(
        {&t, GgmlType::kI32, reinterpret_cast<const uint8_t*>(ids.data()), bytes.size(), false});
    return ids.data();
  }

  bool has(const std::string& name) const { return index_.count(name) != 0; }

 private:
  using Distribution = synth::Distribution;

  const ExpectedTensor& find(const std::string& name) const {
    auto it = index_.find(name);
    if (it == index_.end()) throw std::logic_error("synthetic weights: no tensor " + name);
    return *it->second;
  }

  GgmlType type_of(const ExpectedTensor& t) const {
    return synth::storage_type(t.cls, spec_.mix, t.mtp);
  }

  model::WeightMatrix shape(const ExpectedTensor& t) const {
    model::WeightMatrix m;
    m.name = t.name.c_str();
    m.type = type_of(t);
    m.cols = t.ne[0];
    m.rows = t.ne.size() > 1 ? t.ne[1] : 1;
    m.experts = t.ne.size() > 2 ? t.ne[2] : 1;
    m.row_bytes = quant::row_bytes(m.type, m.cols);
    return m;
  }

  std::vector<uint8_t> host_chunk(const ExpectedTensor& t, GgmlType type) const {
    int64_t rows = 1;
    for (size_t i = 1; i < t.ne.size(); ++i) rows *= t.ne[i];
    const synth::ChunkRequest request{&t,
                                      type,
                                      synth::distribution_for(t, config_),
                                      synth::Encoding::kRandomCodes,
                                      spec_.seed,
                                      {0, 0, rows, 0}};
    std::vector<uint8_t> bytes;
    std::vector<float> scratch;
    synth::generate_chunk(request, bytes, scratch);
    return bytes;
  }

  void report() {
    if (!progress_ || total_ == 0) return;
    const int percent = static_cast<int>(100.0 * static_cast<double>(done_) / total_);
    if (percent == last_percent_) return;
    last_percent_ = percent;
    printed_ = true;
    std::fprintf(stderr, "\rmagnetar: making random weights on the GPU: %.0f / %.0f MiB (%d%%)%s",
                 done_ / kMiB, total_ / kMiB, percent,
                 experts_on_host_ ? ", routed experts to host memory" : "");
    std::fflush(stderr);
  }

  const model::ModelConfig& config_;
  SyntheticSpec spec_;
  bool experts_on_host_;
  bool progress_;
  SyntheticWeights& out_;
  std::unordered_map<std::string, const ExpectedTensor*> index_;
  DeviceArray<uint8_t> staging_;
  size_t staging_bytes_ = 0;
  size_t total_ = 0;
  size_t done_ = 0;
  bool printed_ = false;
  int last_percent_ = -1;
};

model::HyperConnectionWeights make_hc(Generator& g, const std::string& p, const char* which) {
  const std::string stem = p + "hc_" + which;
  return {g.matrix(stem + "_fn.weight"), g.vector(stem + "_scale.weight"),
          g.vector(stem + "_base.weight")};
}

model::CompressorWeights make_compressor(Generator& g, const std::string& stem,
                                         const model::ModelConfig& c, uint32_t width,
                                         uint32_t ratio, uint32_t head_width) {
  model::CompressorWeights w;
  w.ape = g.vector(stem + "_ape.weight");  // [ratio][width], decoded to float as bind_weights does
  w.kv = g.matrix(stem + "_kv.weight");
  w.gate = g.matrix(stem + "_gate.weight");
  w.norm = g.vector(stem + "_norm.weight");
  w.ratio = ratio;
  w.width = width;
  if (w.ape.size() != static_cast<size_t>(width) * ratio || w.norm.size() != head_width ||
      w.kv.rows != width || w.kv.cols != c.n_embd) {
    throw std::logic_error("synthetic weights: " + stem + " does not have the compressor's shape");
  }
  return w;
}

// The fields of one layer, named as model::bind_weights names them.
model::BlockWeights make_block(Generator& g, const model::ModelConfig& c, uint32_t layer) {
  const std::string p = model::layer_prefix(layer);
  const uint32_t ratio = c.ratio(layer);
  model::BlockWeights w;
  w.hc_attn = make_hc(g, p, "attn");
  w.hc_ffn = make_hc(g, p, "ffn");
  w.attn_norm = g.vector(p + "attn_norm.weight");
  w.ffn_norm = g.vector(p + "ffn_norm.weight");
  w.q_a = g.matrix(p + "attn_q_a.weight");
  w.q_a_norm = g.vector(p + "attn_q_a_norm.weight");
  w.q_b = g.matrix(p + "attn_q_b.weight");
  w.kv = g.matrix(p + "attn_kv.weight");
  w.kv_norm = g.vector(p + "attn_kv_a_norm.weight");
  w.sinks = g.vector(p + "attn_sinks.weight");
  w.out_a = g.matrix(p + "attn_output_a.weight");
  w.out_b = g.matrix(p + "attn_output_b.weight");
  w.gate_inp = g.matrix(p + "ffn_gate_inp.weight");
  if (g.has(p + "ffn_gate_tid2eid.weight")) {
    w.token_experts = g.token_map(p + "ffn_gate_tid2eid.weight");
  } else {
    w.expert_bias = g.vector(p + "exp_probs_b.bias");
  }
  w.gate_exps = g.matrix(p + "ffn_gate_exps.weight");
  w.up_exps = g.matrix(p + "ffn_up_exps.weight");
  w.down_exps = g.matrix(p + "ffn_down_exps.weight");
  w.gate_shexp = g.matrix(p + "ffn_gate_shexp.weight");
  w.up_shexp = g.matrix(p + "ffn_up_shexp.weight");
  w.down_shexp = g.matrix(p + "ffn_down_shexp.weight");
  if (ratio != 0) {
    w.compressor =
        make_compressor(g, p + "attn_compressor", c, c.compressor_width(layer), ratio, c.head_dim);
  }
  if (ratio == 4) {
    w.indexer = model::IndexerWeights{
        g.matrix(p + "indexer.attn_q_b.weight"), g.matrix(p + "indexer.proj.weight"),
        make_compressor(g, p + "indexer_compressor", c, c.indexer_compressor_width(), 4,
                        c.indexer_head_dim)};
  }
  return w;
}

}  // namespace

HostBuffer::HostBuffer(size_t bytes) : bytes_(bytes) {
  if (bytes == 0) return;
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    throw std::runtime_error("synthetic weights: cannot map " + std::to_string(bytes >> 20) +
                             " MiB of host memory: " + std::strerror(errno));
  }
  data_ = static_cast<uint8_t*>(p);
}

HostBuffer::~HostBuffer() {
  if (data_ != nullptr) munmap(data_, bytes_);
}

HostBuffer::HostBuffer(HostBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

WeightBytes synthetic_weight_bytes(const model::ModelConfig& config, const SyntheticSpec& spec) {
  WeightBytes b;
  for (const ExpectedTensor& t : inventory(config)) {
    const GgmlType type = synth::storage_type(t.cls, spec.mix, t.mtp);
    size_t n = tensor_bytes(t, type);
    if (is_routed_expert(t)) {
      n += static_cast<size_t>(t.ne[2]) * sizeof(void*);  // the expert pointer table
      b.routed_experts += n;
    }
    b.total += n;
  }
  return b;
}

std::unique_ptr<SyntheticWeights> make_synthetic_weights(const model::ModelConfig& config,
                                                         const SyntheticSpec& spec,
                                                         bool experts_on_host, bool progress) {
  config.validate();
  auto out = std::make_unique<SyntheticWeights>();
  {
    Generator g(config, spec, experts_on_host, progress, *out);
    model::ModelWeights& w = out->weights;
    w.token_embd = g.matrix("token_embd.weight");
    w.output_hc_base = g.vector("output_hc_base.weight");
    w.output_hc_fn = g.matrix("output_hc_fn.weight");
    w.output_hc_scale = g.vector("output_hc_scale.weight");
    w.output_norm = g.vector("output_norm.weight");
    w.output = g.matrix("output.weight");
    for (uint32_t l = 0; l < config.n_layer; ++l) w.layers.push_back(make_block(g, config, l));
  }
  // The fills ran on the legacy default stream; make them finished before anyone reads them.
  MAGNETAR_CUDA_CHECK(cudaDeviceSynchronize());
  return out;
}

DeviceArray<uint8_t> make_random_tensor(quant::GgmlType type, int64_t cols, int64_t rows,
                                        float mean, float stddev, uint64_t seed, uint64_t stream) {
  if (cols <= 0 || rows <= 0 || !quant::row_fits(type, cols)) {
    throw std::invalid_argument("make_random_tensor: rows of " + std::to_string(cols) + " " +
                                std::string(quant::type_name(type)) +
                                " values are not whole blocks");
  }
  DeviceArray<uint8_t> a(static_cast<size_t>(quant::row_bytes(type, cols) * rows));
  fill_tensor(type, a.data(), cols, rows, mean, stddev, seed, stream);
  MAGNETAR_CUDA_CHECK(cudaDeviceSynchronize());
  return a;
}

}  // namespace magnetar::gpu
