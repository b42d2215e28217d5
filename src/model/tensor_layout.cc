#include "model/tensor_layout.h"

#include <algorithm>
#include <unordered_map>

namespace magnetar::model {
namespace {

using quant::GgmlType;
using WC = WeightClass;

int64_t i64(uint32_t v) { return static_cast<int64_t>(v); }

// The tensors one transformer block owns, for a main layer or the MTP block (which is a
// window-only, biased-routed block whose HC mixers and router ds4 stores as F32).
void add_block(const ModelConfig& c, const std::string& p, uint32_t ratio, bool hash, bool mtp,
               std::vector<ExpectedTensor>& out) {
  const int64_t D = c.n_embd, F = c.expert_ffn, E = c.n_expert, hd = c.head_dim;
  const WC mixer = mtp ? WC::kMtpPlain : WC::kPlain;
  auto add = [&](const std::string& name, std::vector<int64_t> ne, WC cls, bool optional = false) {
    out.push_back({p + name, std::move(ne), cls, optional, mtp});
  };
  add("hc_attn_fn.weight", {c.hc_dim(), c.hc_mix()}, mixer);
  add("hc_attn_scale.weight", {3}, WC::kVector);
  add("hc_attn_base.weight", {c.hc_mix()}, WC::kVector);
  add("attn_norm.weight", {D}, WC::kVector);
  add("attn_q_a.weight", {D, c.q_lora_rank}, WC::kDense);
  add("attn_q_a_norm.weight", {c.q_lora_rank}, WC::kVector);
  add("attn_q_b.weight", {c.q_lora_rank, c.q_dim()}, WC::kDense);
  add("attn_kv.weight", {D, hd}, WC::kDense);
  add("attn_kv_a_norm.weight", {hd}, WC::kVector);
  add("attn_sinks.weight", {c.n_head}, WC::kVector);
  add("attn_output_a.weight", {c.o_group_in(), c.o_low_rank()}, WC::kDense);
  add("attn_output_b.weight", {c.o_low_rank(), D}, WC::kDense);
  add("hc_ffn_fn.weight", {c.hc_dim(), c.hc_mix()}, mixer);
  add("hc_ffn_scale.weight", {3}, WC::kVector);
  add("hc_ffn_base.weight", {c.hc_mix()}, WC::kVector);
  add("ffn_norm.weight", {D}, WC::kVector);
  add("ffn_gate_inp.weight", {D, E}, mixer);
  add("ffn_gate_exps.weight", {D, F, E}, WC::kExpertGateUp);
  add("ffn_up_exps.weight", {D, F, E}, WC::kExpertGateUp);
  add("ffn_down_exps.weight", {F, D, E}, WC::kExpertDown);
  add("ffn_gate_shexp.weight", {D, F}, WC::kDense);
  add("ffn_up_shexp.weight", {D, F}, WC::kDense);
  add("ffn_down_shexp.weight", {F, D}, WC::kDense);
  if (hash) {
    add("ffn_gate_tid2eid.weight", {c.n_expert_used, c.n_vocab}, WC::kTokenMap);
    // Hash layers ignore the bias; ds4 binds it when present, published files omit it.
    add("exp_probs_b.bias", {E}, WC::kVector, /*optional=*/true);
  } else {
    add("exp_probs_b.bias", {E}, WC::kVector);
  }
  if (ratio != 0) {
    int64_t cw = (ratio == 4 ? 2 : 1) * hd;
    add("attn_compressor_ape.weight", {cw, ratio}, WC::kPlain);
    add("attn_compressor_kv.weight", {D, cw}, WC::kPlain);
    add("attn_compressor_gate.weight", {D, cw}, WC::kPlain);
    add("attn_compressor_norm.weight", {hd}, WC::kVector);
  }
  if (ratio == 4) {
    const int64_t iw = c.indexer_compressor_width();
    add("indexer.attn_q_b.weight", {c.q_lora_rank, c.indexer_q_dim()}, WC::kPlain);
    add("indexer.proj.weight", {D, c.indexer_heads}, WC::kPlain);
    add("indexer_compressor_ape.weight", {iw, 4}, WC::kPlain);
    add("indexer_compressor_kv.weight", {D, iw}, WC::kPlain);
    add("indexer_compressor_gate.weight", {D, iw}, WC::kPlain);
    add("indexer_compressor_norm.weight", {c.indexer_head_dim}, WC::kVector);
  }
}

std::string shape_text(const std::vector<int64_t>& ne) {
  std::string s = "[";
  for (size_t i = 0; i < ne.size(); ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
  return s + "]";
}

std::string types_text(const std::vector<GgmlType>& types) {
  std::string s;
  for (size_t i = 0; i < types.size(); ++i) {
    s += (i ? "|" : "") + std::string(quant::type_name(types[i]));
  }
  return s;
}

bool contains(const std::vector<GgmlType>& v, GgmlType t) {
  return std::find(v.begin(), v.end(), t) != v.end();
}

}  // namespace

std::string layer_prefix(uint32_t layer) { return "blk." + std::to_string(layer) + "."; }

std::vector<ExpectedTensor> mtp_tensors(const ModelConfig& c) {
  std::vector<ExpectedTensor> out;
  const int64_t D = c.n_embd;
  auto add = [&](const char* name, std::vector<int64_t> ne, WC cls) {
    out.push_back({std::string(kMtpPrefix) + name, std::move(ne), cls, false, true});
  };
  add("e_proj.weight", {D, D}, WC::kDense);
  add("h_proj.weight", {D, D}, WC::kDense);
  add("enorm.weight", {D}, WC::kVector);
  add("hnorm.weight", {D}, WC::kVector);
  add("norm.weight", {D}, WC::kVector);
  add("hc_head_base.weight", {i64(c.hc_count)}, WC::kVector);
  add("hc_head_fn.weight", {c.hc_dim(), c.hc_count}, WC::kMtpPlain);
  add("hc_head_scale.weight", {1}, WC::kVector);
  uint32_t ratio = c.compress_ratios.size() > c.n_layer ? c.compress_ratios[c.n_layer] : 0;
  add_block(c, kMtpPrefix, ratio, /*hash=*/false, /*mtp=*/true, out);
  return out;
}

std::vector<ExpectedTensor> model_tensors(const ModelConfig& c, bool with_mtp) {
  std::vector<ExpectedTensor> out;
  const int64_t D = c.n_embd, V = c.n_vocab;
  out.push_back({"token_embd.weight", {D, V}, WC::kPlain});
  for (uint32_t l = 0; l < c.n_layer; ++l) {
    add_block(c, layer_prefix(l), c.ratio(l), c.is_hash_layer(l), /*mtp=*/false, out);
  }
  out.push_back({"output_hc_base.weight", {i64(c.hc_count)}, WC::kVector});
  out.push_back({"output_hc_fn.weight", {c.hc_dim(), c.hc_count}, WC::kPlain});
  out.push_back({"output_hc_scale.weight", {1}, WC::kVector});
  out.push_back({"output_norm.weight", {D}, WC::kVector});
  out.push_back({"output.weight", {D, V}, WC::kDense});
  if (with_mtp) {
    std::vector<ExpectedTensor> mtp = mtp_tensors(c);
    out.insert(out.end(), mtp.begin(), mtp.end());
  }
  return out;
}

std::vector<GgmlType> accepted_types(WeightClass cls) {
  switch (cls) {
    case WC::kVector:
      return {GgmlType::kF32};
    case WC::kTokenMap:
      return {GgmlType::kI32};
    default:
      return {GgmlType::kF32,  GgmlType::kF16,  GgmlType::kBF16,   GgmlType::kQ8_0,
              GgmlType::kQ2_K, GgmlType::kQ4_K, GgmlType::kIQ2_XXS};
  }
}

std::vector<GgmlType> ds4_types(WeightClass cls) {
  switch (cls) {
    case WC::kVector:
      return {GgmlType::kF32};
    case WC::kPlain:
      return {GgmlType::kF16};
    case WC::kDense:
      return {GgmlType::kQ8_0};
    case WC::kExpertGateUp:
    case WC::kExpertDown:
      return {GgmlType::kIQ2_XXS, GgmlType::kQ2_K, GgmlType::kQ4_K};
    case WC::kTokenMap:
      return {GgmlType::kI32};
    case WC::kMtpPlain:
      return {GgmlType::kF32, GgmlType::kF16};
  }
  return {};
}

std::string_view issue_kind_name(LayoutIssue::Kind kind) {
  switch (kind) {
    case LayoutIssue::Kind::kMissing:
      return "missing";
    case LayoutIssue::Kind::kExtra:
      return "extra";
    case LayoutIssue::Kind::kShape:
      return "shape";
    case LayoutIssue::Kind::kType:
      return "type";
    case LayoutIssue::Kind::kPairing:
      return "pairing";
  }
  return "?";
}

LayoutReport check_layout(const ModelConfig& c, const std::vector<gguf::TensorInfo>& tensors) {
  LayoutReport report;
  std::unordered_map<std::string, const gguf::TensorInfo*> by_name;
  for (const gguf::TensorInfo& t : tensors) by_name.emplace(t.name, &t);
  bool any_mtp = std::any_of(tensors.begin(), tensors.end(), [](const gguf::TensorInfo& t) {
    return t.name.rfind(kMtpPrefix, 0) == 0;
  });
  report.has_mtp = any_mtp;
  std::vector<ExpectedTensor> expected = model_tensors(c, any_mtp);
  auto issue = [&](LayoutIssue::Kind kind, const std::string& name, std::string detail) {
    report.issues.push_back({kind, name, std::move(detail)});
  };
  std::unordered_map<std::string, bool> known;
  for (const ExpectedTensor& e : expected) {
    known[e.name] = true;
    auto it = by_name.find(e.name);
    if (it == by_name.end()) {
      if (e.optional) continue;
      if (e.mtp) report.has_mtp = false;
      issue(LayoutIssue::Kind::kMissing, e.name,
            e.mtp ? "the MTP block is incomplete (all of mtp.0.* or none)" : "required tensor");
      continue;
    }
    const gguf::TensorInfo& t = *it->second;
    if (t.ne != e.ne) {
      issue(LayoutIssue::Kind::kShape, e.name,
            "shape " + shape_text(t.ne) + ", expected " + shape_text(e.ne));
    }
    std::vector<GgmlType> accepted = accepted_types(e.cls);
    if (!contains(accepted, t.type)) {
      issue(LayoutIssue::Kind::kType, e.name,
            "type " + std::string(quant::type_name(t.type)) + ", expected " + types_text(accepted));
    } else if (!contains(ds4_types(e.cls), t.type)) {
      report.ds4_types = false;
      if (report.ds4_type_notes.size() < 4) {
        report.ds4_type_notes.push_back(e.name + " is " + std::string(quant::type_name(t.type)) +
                                        ", ds4 needs " + types_text(ds4_types(e.cls)));
      }
    }
  }
  for (const gguf::TensorInfo& t : tensors) {
    if (!known.count(t.name)) issue(LayoutIssue::Kind::kExtra, t.name, "not part of the layout");
  }
  // Gate and up of one layer are applied to the same input and must share a type (ds4 rule;
  // fused kernels rely on it).
  for (const ExpectedTensor& e : expected) {
    const std::string suffix = "ffn_gate_exps.weight";
    if (e.name.size() < suffix.size() ||
        e.name.compare(e.name.size() - suffix.size(), suffix.size(), suffix) != 0) {
      continue;
    }
    std::string up = e.name.substr(0, e.name.size() - suffix.size()) + "ffn_up_exps.weight";
    auto g = by_name.find(e.name);
    auto u = by_name.find(up);
    if (g != by_name.end() && u != by_name.end() && g->second->type != u->second->type) {
      issue(LayoutIssue::Kind::kPairing, up,
            "type " + std::string(quant::type_name(u->second->type)) + " differs from gate's " +
                std::string(quant::type_name(g->second->type)));
    }
  }
  return report;
}

}  // namespace magnetar::model
