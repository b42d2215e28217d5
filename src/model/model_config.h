// DeepSeek V4 hyperparameters, read from (and written to) GGUF metadata.
//
// Nothing in Magnetar is sized by constants: Flash (43 layers, D = 4096), Pro (61 layers,
// D = 7168) and the tiny synthetic models all load through this structure. The keys, their types
// and ds4's acceptance rules are in shared/spec/gguf.md §2.2; the meaning of each quantity is in
// shared/spec/model.md §1.
//
// Reading is a little more tolerant than ds4 about *types* (any integer type whose value fits is
// accepted for an integer key, so files from other converters load) and stricter about *values*:
// validate() rejects combinations the forward pass cannot run, naming the key.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "gguf/gguf_value.h"

namespace magnetar::model {

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct ModelConfig {
  std::string architecture = "deepseek4";

  // Sizes.
  uint32_t n_layer = 0;      // deepseek4.block_count (main layers, MTP excluded)
  uint32_t n_embd = 0;       // D, deepseek4.embedding_length
  uint32_t n_vocab = 0;      // deepseek4.vocab_size
  uint32_t n_ctx_train = 0;  // deepseek4.context_length (informational)
  uint32_t n_head = 0;       // query heads
  uint32_t n_head_kv = 1;    // one shared key/value head
  uint32_t head_dim = 0;     // key_length == value_length
  uint32_t rope_dim = 0;     // rotary dimensions (the last rope_dim of each head)
  uint32_t q_lora_rank = 0;
  uint32_t o_lora_rank = 0;
  uint32_t o_groups = 0;        // grouped output projection
  uint32_t sliding_window = 0;  // window ring length

  // Compressed sparse attention.
  std::vector<uint32_t> compress_ratios;  // per layer; entries past n_layer belong to MTP blocks
  uint32_t indexer_heads = 0;
  uint32_t indexer_head_dim = 0;
  uint32_t indexer_top_k = 0;

  // RoPE / YaRN.
  float rope_base = 10000.0f;            // window-only layers
  float compress_rope_base = 160000.0f;  // compressed layers
  float rope_scale_factor = 1.0f;
  uint64_t rope_orig_ctx = 0;
  float yarn_beta_fast = 32.0f;
  float yarn_beta_slow = 1.0f;
  float rms_eps = 1e-6f;

  // Mixture of experts.
  uint32_t n_expert = 0;
  uint32_t n_expert_used = 0;
  uint32_t expert_ffn = 0;  // routed (and shared) expert hidden size
  uint32_t n_expert_shared = 1;
  float expert_weights_scale = 1.0f;  // route scale
  bool expert_weights_norm = true;
  uint32_t n_hash_layers = 0;       // layers [0, n_hash_layers) route by token id (tid2eid)
  std::vector<float> swiglu_clamp;  // per layer

  // Manifold-constrained hyper-connections.
  uint32_t hc_count = 4;
  uint32_t hc_sinkhorn_iters = 20;
  float hc_eps = 1e-6f;

  uint32_t n_mtp = 0;  // deepseek4.nextn_predict_layers

  // --- derived quantities (model.md §1, gguf.md §2.2) ---
  uint32_t hc_mix() const { return (2 + hc_count) * hc_count; }  // pre, post, comb
  uint32_t hc_dim() const { return hc_count * n_embd; }
  uint32_t q_dim() const { return n_head * head_dim; }
  uint32_t o_group_in() const { return n_head * head_dim / o_groups; }
  uint32_t o_low_rank() const { return o_groups * o_lora_rank; }
  uint32_t ratio(uint32_t layer) const { return compress_ratios.at(layer); }
  bool is_compressed(uint32_t layer) const { return ratio(layer) != 0; }
  bool has_indexer(uint32_t layer) const { return ratio(layer) == 4; }
  bool is_hash_layer(uint32_t layer) const { return layer < n_hash_layers; }
  // The ratio-4 compressor uses two overlapping windows, so it projects to twice the width.
  uint32_t compressor_width(uint32_t layer) const { return (ratio(layer) == 4 ? 2 : 1) * head_dim; }
  uint32_t indexer_q_dim() const { return indexer_heads * indexer_head_dim; }
  uint32_t indexer_compressor_width() const { return 2 * indexer_head_dim; }

  // Throws ConfigError naming the key when a required key is missing or has an unusable type
  // or value.
  static ModelConfig from_metadata(const gguf::GgufMetadata& metadata);
  // Writes every key with the types ds4's published files use (u32 integers, f32 floats, i32
  // compress_ratios with MTP entries, f32 swiglu_clamp_exp).
  void to_metadata(gguf::GgufMetadata& metadata) const;
  // Checks that the numbers describe a model the engine can run. Throws ConfigError.
  void validate() const;

  bool operator==(const ModelConfig&) const = default;
};

}  // namespace magnetar::model
