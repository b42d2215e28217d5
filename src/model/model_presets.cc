#include "model/model_presets.h"

namespace magnetar::model {
namespace {

// Constants shared by every V4 model (model.md §1.3, "Identical").
ModelConfig v4_common() {
  ModelConfig c;
  c.n_vocab = 129280;
  c.n_ctx_train = 1048576;
  c.n_head_kv = 1;
  c.head_dim = 512;
  c.rope_dim = 64;
  c.o_lora_rank = 1024;
  c.sliding_window = 128;
  c.indexer_heads = 64;
  c.indexer_head_dim = 128;
  c.rope_base = 10000.0f;
  c.compress_rope_base = 160000.0f;
  c.rope_scale_factor = 16.0f;
  c.rope_orig_ctx = 65536;
  c.yarn_beta_fast = 32.0f;
  c.yarn_beta_slow = 1.0f;
  c.rms_eps = 1e-6f;
  c.n_expert_used = 6;
  c.n_expert_shared = 1;
  c.expert_weights_norm = true;
  c.n_hash_layers = 3;
  c.hc_count = 4;
  c.hc_sinkhorn_iters = 20;
  c.hc_eps = 1e-6f;
  c.n_mtp = 1;
  return c;
}

// Even layers compress by 4 (with an indexer), odd layers by 128; `first_two` is the ratio of
// layers 0 and 1; the MTP block's entry is 0.
std::vector<uint32_t> alternating_ratios(uint32_t n_layer, uint32_t first_two, uint32_t n_mtp) {
  std::vector<uint32_t> r;
  for (uint32_t l = 0; l < n_layer; ++l) r.push_back(l < 2 ? first_two : (l % 2 ? 128 : 4));
  r.insert(r.end(), n_mtp, 0);
  return r;
}

}  // namespace

ModelConfig flash_config() {
  ModelConfig c = v4_common();
  c.n_layer = 43;
  c.n_embd = 4096;
  c.n_head = 64;
  c.q_lora_rank = 1024;
  c.o_groups = 8;
  c.indexer_top_k = 512;
  c.n_expert = 256;
  c.expert_ffn = 2048;
  c.expert_weights_scale = 1.5f;
  c.compress_ratios = alternating_ratios(c.n_layer, 0, c.n_mtp);
  c.swiglu_clamp.assign(c.n_layer, 10.0f);
  return c;
}

ModelConfig pro_config() {
  ModelConfig c = v4_common();
  c.n_layer = 61;
  c.n_embd = 7168;
  c.n_head = 128;
  c.q_lora_rank = 1536;
  c.o_groups = 16;
  c.indexer_top_k = 1024;
  c.n_expert = 384;
  c.expert_ffn = 3072;
  c.expert_weights_scale = 2.5f;
  c.compress_ratios = alternating_ratios(c.n_layer, 128, c.n_mtp);
  c.swiglu_clamp.assign(c.n_layer, 10.0f);
  return c;
}

ModelConfig tiny_config() {
  ModelConfig c = v4_common();
  c.n_layer = 4;
  c.n_embd = 256;  // a multiple of 256: rows of the 256-value K-quant and IQ2 blocks
  c.n_head = 4;
  c.head_dim = 128;
  c.rope_dim = 64;
  c.q_lora_rank = 64;
  c.o_lora_rank = 64;
  c.o_groups = 2;
  c.sliding_window = 8;
  c.indexer_heads = 16;  // fewer heads make exact score ties common (model.md §6.5)
  c.indexer_top_k = 8;
  c.n_expert = 8;
  c.n_expert_used = 3;
  c.expert_ffn = 256;
  c.expert_weights_scale = 1.5f;
  c.n_hash_layers = 2;
  // window-only + hash, ratio 4 + hash, ratio 128, ratio 4; then the MTP block.
  c.compress_ratios = {0, 4, 128, 4, 0};
  c.swiglu_clamp.assign(c.n_layer, 10.0f);
  return c;
}

std::optional<ModelConfig> config_by_name(std::string_view name) {
  if (name == "flash") return flash_config();
  if (name == "pro") return pro_config();
  if (name == "tiny") return tiny_config();
  return std::nullopt;
}

}  // namespace magnetar::model
