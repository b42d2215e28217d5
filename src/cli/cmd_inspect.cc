// `magnetar inspect FILE`: what a GGUF holds and whether it is a DeepSeek V4 model we can run.
#include <fmt/format.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/cli_format.h"
#include "cli/commands.h"
#include "gguf/gguf_reader.h"
#include "model/model_check.h"

namespace magnetar::cli {
namespace {

using nlohmann::json;

struct InspectOptions {
  std::string path;
  bool json = false;
  bool all_metadata = false;
  bool no_tensors = false;
};

TypeTotals totals_of(const gguf::GgufFile& file) {
  TypeTotals totals;
  for (const gguf::TensorInfo& t : file.tensors()) totals.add(t.type, t.size);
  return totals;
}

std::string layer_kind(const model::ModelConfig& c, uint32_t l) {
  std::string s = c.ratio(l) == 0 ? "window" : fmt::format("ratio-{}", c.ratio(l));
  if (c.has_indexer(l)) s += "+indexer";
  s += c.is_hash_layer(l) ? " hash" : " topk";
  return s;
}

json config_json(const model::ModelConfig& c) {
  return {{"n_layer", c.n_layer},
          {"n_embd", c.n_embd},
          {"n_vocab", c.n_vocab},
          {"n_ctx_train", c.n_ctx_train},
          {"n_head", c.n_head},
          {"head_dim", c.head_dim},
          {"rope_dim", c.rope_dim},
          {"q_lora_rank", c.q_lora_rank},
          {"o_lora_rank", c.o_lora_rank},
          {"o_groups", c.o_groups},
          {"sliding_window", c.sliding_window},
          {"compress_ratios", c.compress_ratios},
          {"indexer_heads", c.indexer_heads},
          {"indexer_head_dim", c.indexer_head_dim},
          {"indexer_top_k", c.indexer_top_k},
          {"n_expert", c.n_expert},
          {"n_expert_used", c.n_expert_used},
          {"expert_ffn", c.expert_ffn},
          {"n_hash_layers", c.n_hash_layers},
          {"expert_weights_scale", c.expert_weights_scale},
          {"hc_count", c.hc_count},
          {"hc_sinkhorn_iters", c.hc_sinkhorn_iters},
          {"rope_base", c.rope_base},
          {"compress_rope_base", c.compress_rope_base},
          {"rope_scale_factor", c.rope_scale_factor},
          {"rope_orig_ctx", c.rope_orig_ctx},
          {"n_mtp", c.n_mtp}};
}

int print_json(const InspectOptions& o, const gguf::GgufFile& file,
               const model::ModelCheck& check) {
  json j;
  j["file"] = o.path;
  j["file_size"] = file.file_size();
  j["version"] = file.version();
  j["alignment"] = file.alignment();
  j["data_offset"] = file.data_offset();
  j["synthetic"] = check.synthetic;
  j["name"] = file.metadata().get_string("general.name").value_or("");
  j["architecture"] = file.metadata().get_string("general.architecture").value_or("");
  json metadata = json::object();
  for (const auto& [key, value] : file.metadata().entries()) {
    metadata[key] = {{"type", gguf::gguf_type_name(value.type())},
                     {"value", value.to_display(o.all_metadata ? SIZE_MAX : 16)}};
  }
  j["metadata"] = metadata;
  if (check.config) j["config"] = config_json(*check.config);
  j["tokenizer"] = {{"model", check.tokenizer.model},
                    {"pre", check.tokenizer.pre},
                    {"tokens", check.tokenizer.n_tokens},
                    {"merges", check.tokenizer.n_merges}};
  for (const model::SpecialToken& s : check.tokenizer.specials) {
    j["tokenizer"]["special"][s.role] = s.id;
  }
  if (!o.no_tensors) {
    j["tensors"] = json::array();
    for (const gguf::TensorInfo& t : file.tensors()) {
      j["tensors"].push_back({{"name", t.name},
                              {"type", quant::type_name(t.type)},
                              {"shape", t.ne},
                              {"offset", file.data_offset() + t.offset},
                              {"bytes", t.size}});
    }
  }
  TypeTotals totals = totals_of(file);
  for (const auto& [type, row] : totals.rows) {
    j["totals"][std::string(quant::type_name(type))] = {{"tensors", row.tensors},
                                                        {"bytes", row.bytes}};
  }
  j["total_tensors"] = totals.total_tensors();
  j["total_tensor_bytes"] = totals.total_bytes();
  json problems = json::array();
  if (!check.config) problems.push_back({{"kind", "config"}, {"detail", check.config_error}});
  for (const model::LayoutIssue& i : check.layout.issues) {
    problems.push_back(
        {{"kind", model::issue_kind_name(i.kind)}, {"tensor", i.tensor}, {"detail", i.detail}});
  }
  for (const std::string& s : check.tokenizer_issues) {
    problems.push_back({{"kind", "tokenizer"}, {"detail", s}});
  }
  j["valid"] = check.ok();
  j["problems"] = problems;
  j["ds4_types"] = check.layout.ds4_types;
  j["has_mtp"] = check.layout.has_mtp;
  fmt::print("{}\n", j.dump(2));
  return check.ok() ? kExitOk : kExitInvalid;
}

int print_text(const InspectOptions& o, const gguf::GgufFile& file,
               const model::ModelCheck& check) {
  const gguf::GgufMetadata& m = file.metadata();
  fmt::print("file          {} ({} bytes, GGUF v{}, alignment {}, data at byte {})\n", o.path,
             thousands(file.file_size()), file.version(), file.alignment(),
             thousands(file.data_offset()));
  fmt::print("name          {}\n", m.get_string("general.name").value_or("(none)"));
  fmt::print("architecture  {}\n", m.get_string("general.architecture").value_or("(none)"));
  if (check.synthetic) {
    fmt::print(
        "WARNING       synthetic model: RANDOM WEIGHTS (made by magnetar synth, preset {}, "
        "seed {}); its output is noise\n",
        m.get_string("magnetar.synthetic.preset").value_or("?"),
        m.find("magnetar.synthetic.seed") ? m.find("magnetar.synthetic.seed")->to_display() : "?");
  }
  if (check.config) {
    const model::ModelConfig& c = *check.config;
    fmt::print("\nhyperparameters\n");
    fmt::print("  layers {}  embd {}  vocab {}  context {}\n", c.n_layer, c.n_embd, c.n_vocab,
               c.n_ctx_train);
    fmt::print(
        "  attention: {} heads x {} (rope {}), q_lora {}, output {} groups x {}, window {}\n",
        c.n_head, c.head_dim, c.rope_dim, c.q_lora_rank, c.o_groups, c.o_lora_rank,
        c.sliding_window);
    fmt::print("  indexer: {} heads x {}, top-k {}\n", c.indexer_heads, c.indexer_head_dim,
               c.indexer_top_k);
    fmt::print("  experts: {} routed ({} used, {} hash layers, scale {}), ffn {}, 1 shared\n",
               c.n_expert, c.n_expert_used, c.n_hash_layers, c.expert_weights_scale, c.expert_ffn);
    fmt::print("  hyper-connections: {} streams, {} Sinkhorn iterations; MTP blocks {}\n",
               c.hc_count, c.hc_sinkhorn_iters, c.n_mtp);
    fmt::print("  rope base {} / compressed {} (YaRN x{} from {})\n", c.rope_base,
               c.compress_rope_base, c.rope_scale_factor, c.rope_orig_ctx);
    fmt::print("  layers:");
    for (uint32_t l = 0; l < c.n_layer; ++l) fmt::print(" {}:{}", l, layer_kind(c, l));
    fmt::print("\n");
  }
  const model::TokenizerSummary& t = check.tokenizer;
  fmt::print("\ntokenizer     {} / {}: {} tokens, {} merges\n", t.model, t.pre,
             thousands(t.n_tokens), thousands(t.n_merges));
  fmt::print("  special:");
  for (const model::SpecialToken& s : t.specials) fmt::print(" {}={}", s.role, s.id);
  fmt::print("\n\nmetadata      {} keys\n", m.size());
  for (const auto& [key, value] : m.entries()) {
    bool bulky = key.rfind("tokenizer.ggml.", 0) == 0 && value.is_array();
    if (!o.all_metadata && bulky) continue;
    fmt::print("  {:<52} {:<7} {}\n", key, gguf::gguf_type_name(value.type()),
               value.to_display(o.all_metadata ? SIZE_MAX : 8));
  }
  if (!o.no_tensors) {
    fmt::print("\ntensors       {}\n", file.tensors().size());
    fmt::print("  {:<42} {:<8} {:<22} {:>16}\n", "name", "type", "shape", "bytes");
    for (const gguf::TensorInfo& ti : file.tensors()) {
      fmt::print("  {:<42} {:<8} {:<22} {:>16}\n", ti.name, quant::type_name(ti.type),
                 shape_string(ti.ne), thousands(ti.size));
    }
  }
  fmt::print("\ntotals per type\n{}", totals_of(file).table());

  fmt::print("\nvalidation    ");
  if (check.ok()) {
    fmt::print("OK: DeepSeek V4 layout{}\n", check.layout.has_mtp ? " with MTP block" : "");
  } else {
    fmt::print("FAILED\n");
    if (!check.config) fmt::print("  config: {}\n", check.config_error);
    for (const model::LayoutIssue& i : check.layout.issues) {
      fmt::print("  {}: {}: {}\n", model::issue_kind_name(i.kind), i.tensor, i.detail);
    }
    for (const std::string& s : check.tokenizer_issues) fmt::print("  tokenizer: {}\n", s);
  }
  if (check.config) {
    if (check.layout.ds4_types) {
      fmt::print("ds4 types     yes (the type mix ds4 loads)\n");
    } else {
      fmt::print("ds4 types     no (Magnetar loads it; ds4 would not):\n");
      for (const std::string& n : check.layout.ds4_type_notes) fmt::print("  {}\n", n);
    }
  }
  return check.ok() ? kExitOk : kExitInvalid;
}

}  // namespace

Command add_inspect_command(CLI::App& root) {
  auto o = std::make_shared<InspectOptions>();
  CLI::App* app = root.add_subcommand(
      "inspect", "Show a GGUF's metadata, tokenizer and tensors, and validate the V4 layout");
  app->add_option("file", o->path, "GGUF file")->required();
  app->add_flag("--json", o->json, "Print one JSON object instead of text");
  app->add_flag("--all-metadata", o->all_metadata, "Print every metadata value in full");
  app->add_flag("--no-tensors", o->no_tensors, "Omit the per-tensor table");
  app->footer(
      "Exit status: 0 valid V4 model, 1 readable but not a valid V4 model, 2 unreadable or "
      "corrupt file.");
  return {app, [o] {
            gguf::GgufFile file = gguf::GgufFile::open(o->path);
            model::ModelCheck check = model::check_model_file(file);
            return o->json ? print_json(*o, file, check) : print_text(*o, file, check);
          }};
}

}  // namespace magnetar::cli
