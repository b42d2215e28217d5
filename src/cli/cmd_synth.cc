// `magnetar synth`: write a DeepSeek V4 GGUF in ds4's exact layout, filled with random weights.
#include <fmt/format.h>

#include <memory>
#include <optional>
#include <sstream>
#include <string>

#include "cli/cli_format.h"
#include "cli/commands.h"
#include "synth/synth_writer.h"

namespace magnetar::cli {
namespace {

struct SynthCliOptions {
  std::string preset = "tiny";
  std::string output;
  std::string types;
  std::string encoding;
  std::string tokenizer_dir;
  std::string compress_ratios;
  uint64_t seed = 42;
  unsigned threads = 0;
  bool dry_run = false;
  bool mtp = false;     // --mtp: force the MTP block in
  bool no_mtp = false;  // --no-mtp: leave it out
  // Dimension overrides: each maps to one ModelConfig field.
  std::optional<uint32_t> layers, embd, vocab, ctx, heads, head_dim, rope_dim, q_lora, o_lora,
      o_groups, window, idx_heads, idx_dim, idx_top_k, experts, experts_used, expert_ffn,
      hash_layers, hc, sinkhorn;
};

std::vector<uint32_t> parse_ratios(const std::string& text) {
  std::vector<uint32_t> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    try {
      size_t used = 0;
      unsigned long v = std::stoul(item, &used);
      if (used != item.size()) throw std::invalid_argument(item);
      out.push_back(static_cast<uint32_t>(v));
    } catch (const std::exception&) {
      throw std::invalid_argument("--compress-ratios: '" + item + "' is not a number");
    }
  }
  return out;
}

// Applies the overrides to the preset. A new layer count without explicit ratios continues the
// preset's alternation (each layer repeats the ratio of the layer two before it).
synth::SynthPreset resolve_preset(const SynthCliOptions& o) {
  std::optional<synth::SynthPreset> found = synth::preset_by_name(o.preset);
  if (!found) {
    throw std::invalid_argument("unknown preset '" + o.preset +
                                "' (known: " + std::string(synth::preset_names()) + ")");
  }
  synth::SynthPreset p = *found;
  model::ModelConfig& c = p.config;
  auto set = [](const std::optional<uint32_t>& v, uint32_t& field) {
    if (v) field = *v;
  };
  set(o.embd, c.n_embd);
  set(o.vocab, c.n_vocab);
  set(o.ctx, c.n_ctx_train);
  set(o.heads, c.n_head);
  set(o.head_dim, c.head_dim);
  set(o.rope_dim, c.rope_dim);
  set(o.q_lora, c.q_lora_rank);
  set(o.o_lora, c.o_lora_rank);
  set(o.o_groups, c.o_groups);
  set(o.window, c.sliding_window);
  set(o.idx_heads, c.indexer_heads);
  set(o.idx_dim, c.indexer_head_dim);
  set(o.idx_top_k, c.indexer_top_k);
  set(o.experts, c.n_expert);
  set(o.experts_used, c.n_expert_used);
  set(o.expert_ffn, c.expert_ffn);
  set(o.hc, c.hc_count);
  set(o.sinkhorn, c.hc_sinkhorn_iters);
  if (o.layers) {
    std::vector<uint32_t> main(c.compress_ratios.begin(), c.compress_ratios.begin() + c.n_layer);
    std::vector<uint32_t> ratios;
    for (uint32_t l = 0; l < *o.layers; ++l) {
      ratios.push_back(l < main.size() ? main[l] : ratios[l - 2]);
    }
    ratios.insert(ratios.end(), c.n_mtp, 0);
    c.n_layer = *o.layers;
    c.compress_ratios = ratios;
    c.swiglu_clamp.assign(c.n_layer, 10.0f);
    c.n_hash_layers = std::min(c.n_hash_layers, c.n_layer);
  }
  set(o.hash_layers, c.n_hash_layers);
  if (!o.compress_ratios.empty()) c.compress_ratios = parse_ratios(o.compress_ratios);
  if (o.mtp && o.no_mtp) throw std::invalid_argument("--mtp and --no-mtp contradict each other");
  if (o.mtp) {
    p.with_mtp = true;
    if (c.n_mtp == 0) c.n_mtp = 1;
  }
  if (o.no_mtp) p.with_mtp = false;
  if (!o.types.empty()) {
    std::optional<synth::QuantMix> mix = synth::quant_mix_from_name(o.types);
    if (!mix) throw std::invalid_argument("--types must be q2, q4 or f32, not '" + o.types + "'");
    p.mix = *mix;
  }
  if (o.encoding == "exact") p.encoding = synth::Encoding::kExact;
  if (o.encoding == "random-codes") p.encoding = synth::Encoding::kRandomCodes;
  return p;
}

int run_synth(const SynthCliOptions& o) {
  synth::SynthOptions options;
  options.preset = resolve_preset(o);
  options.seed = o.seed;
  options.threads = o.threads;
  std::filesystem::path tok_dir = o.tokenizer_dir.empty() ? synth::find_tokenizer_dir()
                                                          : std::filesystem::path(o.tokenizer_dir);
  synth::TokenizerVocab vocab =
      synth::load_deepseek_v4_vocab(tok_dir, options.preset.config.n_vocab);
  synth::SynthPlan plan = synth::plan_synthetic_model(options, vocab);
  gguf::EncodedHeader header = gguf::encode_header(plan.metadata, plan.specs);

  TypeTotals totals;
  for (const gguf::TensorInfo& t : header.tensors) totals.add(t.type, t.size);
  if (o.dry_run) {
    fmt::print("preset {} ({} mix, {} encoding{}), seed {}\n", options.preset.name,
               synth::quant_mix_name(options.preset.mix),
               options.preset.encoding == synth::Encoding::kExact ? "exact" : "random-codes",
               options.preset.with_mtp ? ", with MTP block" : "", options.seed);
    fmt::print("  {:<42} {:<8} {:<22} {:>16}\n", "name", "type", "shape", "bytes");
    for (const gguf::TensorInfo& t : header.tensors) {
      fmt::print("  {:<42} {:<8} {:<22} {:>16}\n", t.name, quant::type_name(t.type),
                 shape_string(t.ne), thousands(t.size));
    }
    fmt::print("\ntotals per type\n{}", totals.table());
    fmt::print("\ntensors {}, tensor bytes {} ({}), header {} bytes, file {} bytes ({})\n",
               totals.total_tensors(), thousands(totals.total_bytes()),
               human_bytes(totals.total_bytes()), thousands(header.bytes.size()),
               thousands(header.file_size), human_bytes(header.file_size));
    return kExitOk;
  }
  if (o.output.empty()) throw std::invalid_argument("-o/--output is required (or use --dry-run)");
  bool tty = isatty(fileno(stderr));
  auto progress = [&](uint64_t done, uint64_t total) {
    if (tty) fmt::print(stderr, "\r  {} / {}   ", human_bytes(done), human_bytes(total));
  };
  synth::SynthResult r = synth::write_synthetic_model(options, plan, o.output, progress);
  if (tty) fmt::print(stderr, "\n");
  fmt::print("wrote {}: {} tensors, {} ({} bytes) in {:.2f} s = {:.2f} GB/s on {} threads\n",
             o.output, totals.total_tensors(), human_bytes(r.file_bytes), thousands(r.file_bytes),
             r.seconds, static_cast<double>(r.file_bytes) / r.seconds / 1e9, r.threads);
  fmt::print(
      "this model has RANDOM WEIGHTS: it is for tests and benchmarks, its output is noise\n");
  return kExitOk;
}

}  // namespace

Command add_synth_command(CLI::App& root) {
  auto o = std::make_shared<SynthCliOptions>();
  CLI::App* app = root.add_subcommand(
      "synth", "Write a synthetic DeepSeek V4 GGUF (ds4 layout, real tokenizer, random weights)");
  app->add_option("--preset", o->preset, "tiny | v4-flash-q2 | v4-flash-q4 | v4-pro-q2")
      ->capture_default_str();
  app->add_option("-o,--output", o->output, "Output GGUF path");
  app->add_option("--types", o->types, "Quantization mix: q2 | q4 | f32 (default: the preset's)");
  app->add_option("--encode", o->encoding,
                  "exact (Gaussian weights through the real quantizers) | random-codes (random "
                  "quant blocks, fast); default: exact for tiny, random-codes for full sizes")
      ->check(CLI::IsMember({"exact", "random-codes"}));
  app->add_option("--seed", o->seed, "Random seed (same seed, same bytes)")->capture_default_str();
  app->add_option("--threads", o->threads, "Writer threads (default: all cores)");
  app->add_flag("--dry-run", o->dry_run, "Print the tensor inventory and sizes, write nothing");
  app->add_flag("--mtp", o->mtp, "Include the MTP block (mtp.0.*; default for tiny only)");
  app->add_flag("--no-mtp", o->no_mtp, "Omit the MTP block");
  app->add_option("--tokenizer", o->tokenizer_dir,
                  "Directory with tokenizer.json and v4_added_tokens.json");
  app->add_option("--compress-ratios", o->compress_ratios,
                  "Per-layer compression ratios, comma separated (MTP entries last)");
  auto dim = [&](const char* flag, std::optional<uint32_t>& field, const char* what) {
    app->add_option(flag, field, what)->group("Dimension overrides");
  };
  dim("--layers", o->layers, "Number of layers (block_count)");
  dim("--embd", o->embd, "Hidden size D");
  dim("--vocab", o->vocab, "Vocabulary size (>= the tokenizer's ids)");
  dim("--ctx", o->ctx, "context_length metadata");
  dim("--heads", o->heads, "Attention heads");
  dim("--head-dim", o->head_dim, "Head dimension (key = value length)");
  dim("--rope-dim", o->rope_dim, "Rotary dimensions");
  dim("--q-lora-rank", o->q_lora, "Query LoRA rank");
  dim("--o-lora-rank", o->o_lora, "Output LoRA rank");
  dim("--o-groups", o->o_groups, "Output projection groups");
  dim("--window", o->window, "Sliding window");
  dim("--indexer-heads", o->idx_heads, "Indexer heads");
  dim("--indexer-dim", o->idx_dim, "Indexer head dimension (power of two)");
  dim("--indexer-top-k", o->idx_top_k, "Indexer top-k");
  dim("--experts", o->experts, "Routed experts");
  dim("--experts-used", o->experts_used, "Experts per token");
  dim("--expert-ffn", o->expert_ffn, "Expert hidden size");
  dim("--hash-layers", o->hash_layers, "Hash-routed layers");
  dim("--hc", o->hc, "Hyper-connection streams");
  dim("--sinkhorn-iters", o->sinkhorn, "Sinkhorn iterations");
  return {app, [o] { return run_synth(*o); }};
}

}  // namespace magnetar::cli
