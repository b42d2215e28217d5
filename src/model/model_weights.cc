#include "model/model_weights.h"

#include <string>

#include "model/tensor_layout.h"
#include "quant/quant.h"

namespace magnetar::model {
namespace {

// Looks tensors up by name; the layout check has already run, so a missing name here is a bug in
// the binder, not in the file.
class Binder {
 public:
  explicit Binder(const gguf::GgufFile& file) : file_(file) {}

  const gguf::TensorInfo& info(const std::string& name) const {
    const gguf::TensorInfo* t = file_.find_tensor(name);
    if (t == nullptr) throw ConfigError("weight binding: no tensor " + name);
    return *t;
  }

  bool has(const std::string& name) const { return file_.find_tensor(name) != nullptr; }

  WeightMatrix matrix(const std::string& name) const {
    const gguf::TensorInfo& t = info(name);
    WeightMatrix m;
    m.name = t.name.c_str();
    m.type = t.type;
    m.data = file_.tensor_data(t).data();
    m.cols = t.ne[0];
    m.rows = t.ne.size() > 1 ? t.ne[1] : 1;
    m.experts = t.ne.size() > 2 ? t.ne[2] : 1;
    m.row_bytes = quant::row_bytes(t.type, m.cols);
    return m;
  }

  std::vector<float> vector(const std::string& name) const {
    WeightMatrix m = matrix(name);
    std::vector<float> out(static_cast<size_t>(m.cols * m.rows * m.experts));
    quant::dequantize_row(m.type, m.data, out.data(), static_cast<int64_t>(out.size()));
    return out;
  }

 private:
  const gguf::GgufFile& file_;
};

HyperConnectionWeights bind_hc(const Binder& b, const std::string& p, const char* which) {
  std::string stem = p + "hc_" + which;
  return {b.matrix(stem + "_fn.weight"), b.vector(stem + "_scale.weight"),
          b.vector(stem + "_base.weight")};
}

CompressorWeights bind_compressor(const Binder& b, const std::string& stem) {
  CompressorWeights c;
  c.ape = b.vector(stem + "_ape.weight");  // ne [width, ratio]: row r is position r's bias
  c.kv = b.matrix(stem + "_kv.weight");
  c.gate = b.matrix(stem + "_gate.weight");
  c.norm = b.vector(stem + "_norm.weight");
  const gguf::TensorInfo& ape = b.info(stem + "_ape.weight");
  c.width = static_cast<uint32_t>(ape.ne[0]);
  c.ratio = static_cast<uint32_t>(ape.ne[1]);
  return c;
}

BlockWeights bind_block(const Binder& b, const std::string& p, uint32_t ratio) {
  BlockWeights w;
  w.hc_attn = bind_hc(b, p, "attn");
  w.hc_ffn = bind_hc(b, p, "ffn");
  w.attn_norm = b.vector(p + "attn_norm.weight");
  w.ffn_norm = b.vector(p + "ffn_norm.weight");
  w.q_a = b.matrix(p + "attn_q_a.weight");
  w.q_a_norm = b.vector(p + "attn_q_a_norm.weight");
  w.q_b = b.matrix(p + "attn_q_b.weight");
  w.kv = b.matrix(p + "attn_kv.weight");
  w.kv_norm = b.vector(p + "attn_kv_a_norm.weight");
  w.sinks = b.vector(p + "attn_sinks.weight");
  w.out_a = b.matrix(p + "attn_output_a.weight");
  w.out_b = b.matrix(p + "attn_output_b.weight");
  w.gate_inp = b.matrix(p + "ffn_gate_inp.weight");
  if (b.has(p + "ffn_gate_tid2eid.weight")) {
    w.token_experts =
        reinterpret_cast<const int32_t*>(b.matrix(p + "ffn_gate_tid2eid.weight").data);
  } else {
    w.expert_bias = b.vector(p + "exp_probs_b.bias");
  }
  w.gate_exps = b.matrix(p + "ffn_gate_exps.weight");
  w.up_exps = b.matrix(p + "ffn_up_exps.weight");
  w.down_exps = b.matrix(p + "ffn_down_exps.weight");
  w.gate_shexp = b.matrix(p + "ffn_gate_shexp.weight");
  w.up_shexp = b.matrix(p + "ffn_up_shexp.weight");
  w.down_shexp = b.matrix(p + "ffn_down_shexp.weight");
  if (ratio != 0) w.compressor = bind_compressor(b, p + "attn_compressor");
  if (ratio == 4) {
    w.indexer =
        IndexerWeights{b.matrix(p + "indexer.attn_q_b.weight"), b.matrix(p + "indexer.proj.weight"),
                       bind_compressor(b, p + "indexer_compressor")};
  }
  return w;
}

}  // namespace

WeightMatrix WeightMatrix::expert(int64_t e) const {
  WeightMatrix m = *this;
  m.data = data + e * rows * row_bytes;
  m.experts = 1;
  return m;
}

void decode_row(const WeightMatrix& m, int64_t row, float* out) {
  quant::dequantize_row(m.type, m.row(row), out, m.cols);
}

ModelWeights bind_weights(const gguf::GgufFile& file, const ModelConfig& config) {
  LayoutReport report = check_layout(config, file.tensors());
  if (!report.ok()) {
    std::string what = file.origin() + ": not a valid DeepSeek V4 model: ";
    for (size_t i = 0; i < report.issues.size() && i < 5; ++i) {
      const LayoutIssue& issue = report.issues[i];
      what += (i ? "; " : "") + std::string(issue_kind_name(issue.kind)) + " " + issue.tensor +
              " (" + issue.detail + ")";
    }
    if (report.issues.size() > 5) {
      what += "; and " + std::to_string(report.issues.size() - 5) + " more";
    }
    throw ConfigError(what);
  }
  for (const gguf::TensorInfo& t : file.tensors()) {
    if (!quant::can_dequantize(t.type) && t.type != quant::GgmlType::kI32) {
      throw ConfigError(t.name + ": type " + std::string(quant::type_name(t.type)) +
                        " has no CPU decoder");
    }
  }
  Binder b(file);
  ModelWeights w;
  w.token_embd = b.matrix("token_embd.weight");
  w.output_hc_base = b.vector("output_hc_base.weight");
  w.output_hc_fn = b.matrix("output_hc_fn.weight");
  w.output_hc_scale = b.vector("output_hc_scale.weight");
  w.output_norm = b.vector("output_norm.weight");
  w.output = b.matrix("output.weight");
  for (uint32_t l = 0; l < config.n_layer; ++l) {
    w.layers.push_back(bind_block(b, layer_prefix(l), config.ratio(l)));
  }
  if (report.has_mtp) {
    MtpWeights m;
    const std::string p = kMtpPrefix;
    m.e_proj = b.matrix(p + "e_proj.weight");
    m.h_proj = b.matrix(p + "h_proj.weight");
    m.enorm = b.vector(p + "enorm.weight");
    m.hnorm = b.vector(p + "hnorm.weight");
    m.norm = b.vector(p + "norm.weight");
    m.hc_head_base = b.vector(p + "hc_head_base.weight");
    m.hc_head_fn = b.matrix(p + "hc_head_fn.weight");
    m.hc_head_scale = b.vector(p + "hc_head_scale.weight");
    uint32_t ratio =
        config.compress_ratios.size() > config.n_layer ? config.compress_ratios[config.n_layer] : 0;
    m.block = bind_block(b, p, ratio);
    w.mtp = std::move(m);
  }
  return w;
}

}  // namespace magnetar::model
