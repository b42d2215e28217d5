#include "model/model_config.h"

#include <cmath>
#include <limits>

namespace magnetar::model {
namespace {

using gguf::GgufMetadata;
using gguf::GgufType;
using gguf::GgufValue;

constexpr const char* kArch = "deepseek4";

std::string key_of(const char* suffix) { return std::string(kArch) + "." + suffix; }

// Reads metadata with ds4's rules, reporting the first problem with the key's name.
class MetadataReader {
 public:
  explicit MetadataReader(const GgufMetadata& m) : m_(m) {}

  const GgufValue& require(const std::string& key) const {
    const GgufValue* v = m_.find(key);
    if (v == nullptr) throw ConfigError("missing metadata key " + key);
    return *v;
  }

  uint32_t u32(const char* suffix) const {
    std::string key = key_of(suffix);
    return to_u32(key, require(key));
  }

  uint32_t u32_or(const char* suffix, uint32_t fallback) const {
    std::string key = key_of(suffix);
    const GgufValue* v = m_.find(key);
    return v ? to_u32(key, *v) : fallback;
  }

  uint64_t u64(const char* suffix) const {
    std::string key = key_of(suffix);
    const GgufValue& v = require(key);
    std::optional<uint64_t> x = v.is_integer() ? v.as_u64() : std::nullopt;
    if (!x) throw ConfigError(key + " must be a non-negative integer, found " + describe(v));
    return *x;
  }

  float f32(const char* suffix) const {
    std::string key = key_of(suffix);
    const GgufValue& v = require(key);
    std::optional<double> x = v.is_array() ? std::nullopt : v.as_f64();
    if (!x || v.type() == GgufType::kBool || !std::isfinite(*x)) {
      throw ConfigError(key + " must be a finite number, found " + describe(v));
    }
    return static_cast<float>(*x);
  }

  bool boolean(const char* suffix) const {
    std::string key = key_of(suffix);
    const GgufValue& v = require(key);
    if (!v.as_bool()) throw ConfigError(key + " must be a bool, found " + describe(v));
    return *v.as_bool();
  }

  std::vector<uint32_t> u32_array(const char* suffix) const {
    std::string key = key_of(suffix);
    const GgufValue& v = require(key);
    if (!v.is_array()) throw ConfigError(key + " must be an array, found " + describe(v));
    std::vector<uint32_t> out;
    for (uint64_t i = 0; i < v.array_size(); ++i) {
      out.push_back(to_u32(key + "[" + std::to_string(i) + "]", v.element(i)));
    }
    return out;
  }

  std::vector<float> f32_array(const char* suffix) const {
    std::string key = key_of(suffix);
    const GgufValue& v = require(key);
    if (!v.is_array() ||
        (v.element_type() != GgufType::kFloat32 && v.element_type() != GgufType::kFloat64)) {
      throw ConfigError(key + " must be an array of floats, found " + describe(v));
    }
    std::vector<float> out;
    for (uint64_t i = 0; i < v.array_size(); ++i) {
      out.push_back(static_cast<float>(*v.element(i).as_f64()));
    }
    return out;
  }

  static std::string describe(const GgufValue& v) {
    return std::string(gguf::gguf_type_name(v.type())) + " " + v.to_display(4);
  }

 private:
  static uint32_t to_u32(const std::string& key, const GgufValue& v) {
    std::optional<uint64_t> x = v.is_integer() ? v.as_u64() : std::nullopt;
    if (!x || *x > std::numeric_limits<uint32_t>::max()) {
      throw ConfigError(key + " must be an unsigned 32-bit integer, found " + describe(v));
    }
    return static_cast<uint32_t>(*x);
  }

  const GgufMetadata& m_;
};

void require(bool ok, const std::string& what) {
  if (!ok) throw ConfigError("invalid model configuration: " + what);
}

bool is_power_of_two(uint32_t x) { return x != 0 && (x & (x - 1)) == 0; }

}  // namespace

ModelConfig ModelConfig::from_metadata(const GgufMetadata& metadata) {
  MetadataReader r(metadata);
  ModelConfig c;
  const GgufValue& arch = r.require("general.architecture");
  if (arch.as_string() == nullptr || *arch.as_string() != kArch) {
    throw ConfigError("general.architecture is " + MetadataReader::describe(arch) +
                      ", expected \"deepseek4\"");
  }
  c.n_layer = r.u32("block_count");
  c.n_embd = r.u32("embedding_length");
  c.n_vocab = r.u32("vocab_size");
  c.n_ctx_train = r.u32_or("context_length", 0);
  c.n_head = r.u32("attention.head_count");
  c.n_head_kv = r.u32("attention.head_count_kv");
  c.head_dim = r.u32("attention.key_length");
  uint32_t value_length = r.u32("attention.value_length");
  if (value_length != c.head_dim) {
    throw ConfigError(key_of("attention.value_length") + " (" + std::to_string(value_length) +
                      ") must equal attention.key_length (" + std::to_string(c.head_dim) +
                      "): keys and values share one vector");
  }
  c.rope_dim = r.u32("rope.dimension_count");
  c.q_lora_rank = r.u32("attention.q_lora_rank");
  c.o_lora_rank = r.u32("attention.output_lora_rank");
  c.o_groups = r.u32("attention.output_group_count");
  c.sliding_window = r.u32("attention.sliding_window");
  c.indexer_heads = r.u32("attention.indexer.head_count");
  c.indexer_head_dim = r.u32("attention.indexer.key_length");
  c.indexer_top_k = r.u32("attention.indexer.top_k");
  c.compress_ratios = r.u32_array("attention.compress_ratios");
  c.compress_rope_base = r.f32("attention.compress_rope_freq_base");
  c.rms_eps = r.f32("attention.layer_norm_rms_epsilon");
  c.rope_base = r.f32("rope.freq_base");
  c.rope_scale_factor = r.f32("rope.scaling.factor");
  c.rope_orig_ctx = r.u64("rope.scaling.original_context_length");
  c.yarn_beta_fast = r.f32("rope.scaling.yarn_beta_fast");
  c.yarn_beta_slow = r.f32("rope.scaling.yarn_beta_slow");
  c.n_expert = r.u32("expert_count");
  c.n_expert_used = r.u32("expert_used_count");
  c.expert_ffn = r.u32("expert_feed_forward_length");
  c.n_expert_shared = r.u32("expert_shared_count");
  for (const char* grouped : {"expert_group_count", "expert_group_used_count"}) {
    if (r.u32_or(grouped, 0) != 0) {
      throw ConfigError(key_of(grouped) + " must be 0 or absent: DeepSeek V4 has no expert groups");
    }
  }
  c.expert_weights_scale = r.f32("expert_weights_scale");
  c.expert_weights_norm = r.boolean("expert_weights_norm");
  c.n_hash_layers = r.u32("hash_layer_count");
  c.swiglu_clamp = r.f32_array("swiglu_clamp_exp");
  c.hc_count = r.u32("hyper_connection.count");
  c.hc_sinkhorn_iters = r.u32("hyper_connection.sinkhorn_iterations");
  c.hc_eps = r.f32("hyper_connection.epsilon");
  c.n_mtp = r.u32_or("nextn_predict_layers", 0);
  c.validate();
  return c;
}

void ModelConfig::to_metadata(GgufMetadata& m) const {
  auto u32 = [&](const char* k, uint32_t v) { m.set(key_of(k), GgufValue::u32(v)); };
  auto f32 = [&](const char* k, float v) { m.set(key_of(k), GgufValue::f32(v)); };
  m.set("general.architecture", GgufValue::string(architecture));
  u32("block_count", n_layer);
  u32("context_length", n_ctx_train);
  u32("embedding_length", n_embd);
  u32("vocab_size", n_vocab);
  u32("attention.head_count", n_head);
  u32("attention.head_count_kv", n_head_kv);
  u32("attention.key_length", head_dim);
  u32("attention.value_length", head_dim);
  u32("rope.dimension_count", rope_dim);
  u32("attention.q_lora_rank", q_lora_rank);
  u32("attention.output_lora_rank", o_lora_rank);
  u32("attention.output_group_count", o_groups);
  std::vector<int32_t> ratios(compress_ratios.begin(), compress_ratios.end());
  m.set(key_of("attention.compress_ratios"), GgufValue::i32_array(ratios));
  f32("attention.compress_rope_freq_base", compress_rope_base);
  f32("attention.layer_norm_rms_epsilon", rms_eps);
  f32("rope.freq_base", rope_base);
  f32("rope.scaling.factor", rope_scale_factor);
  u32("rope.scaling.original_context_length", static_cast<uint32_t>(rope_orig_ctx));
  f32("rope.scaling.yarn_beta_fast", yarn_beta_fast);
  f32("rope.scaling.yarn_beta_slow", yarn_beta_slow);
  m.set(key_of("rope.scaling.type"), GgufValue::string("yarn"));
  u32("expert_count", n_expert);
  u32("expert_used_count", n_expert_used);
  u32("expert_feed_forward_length", expert_ffn);
  u32("expert_shared_count", n_expert_shared);
  f32("expert_weights_scale", expert_weights_scale);
  m.set(key_of("expert_weights_norm"), GgufValue::boolean(expert_weights_norm));
  u32("hash_layer_count", n_hash_layers);
  m.set(key_of("swiglu_clamp_exp"), GgufValue::f32_array(swiglu_clamp));
  u32("attention.sliding_window", sliding_window);
  u32("attention.indexer.head_count", indexer_heads);
  u32("attention.indexer.key_length", indexer_head_dim);
  u32("attention.indexer.top_k", indexer_top_k);
  u32("nextn_predict_layers", n_mtp);
  u32("hyper_connection.count", hc_count);
  u32("hyper_connection.sinkhorn_iterations", hc_sinkhorn_iters);
  f32("hyper_connection.epsilon", hc_eps);
}

void ModelConfig::validate() const {
  auto n = [](uint32_t v) { return std::to_string(v); };
  require(n_layer >= 1, "block_count must be at least 1");
  require(n_embd >= 1 && n_vocab >= 1 && n_head >= 1, "embedding, vocab and heads must be > 0");
  require(n_head_kv == 1,
          "attention.head_count_kv must be 1 (one shared key/value head), is " + n(n_head_kv));
  require(head_dim >= 1 && rope_dim % 2 == 0 && rope_dim <= head_dim,
          "rope.dimension_count (" + n(rope_dim) + ") must be even and <= key_length (" +
              n(head_dim) + ")");
  // The official model simulates FP8 storage of the non-rotary part of each KV row in 64-value
  // blocks (model.md §3.3), so that part must be a whole number of blocks.
  require(
      (head_dim - rope_dim) % 64 == 0,
      "key_length - rope.dimension_count must be a multiple of 64, is " + n(head_dim - rope_dim));
  require(q_lora_rank >= 1 && o_lora_rank >= 1, "LoRA ranks must be > 0");
  require(o_groups >= 1 && n_head % o_groups == 0, "attention.output_group_count (" + n(o_groups) +
                                                       ") must divide head_count (" + n(n_head) +
                                                       ")");
  require(sliding_window >= 1, "attention.sliding_window must be > 0");
  require(compress_ratios.size() >= n_layer, "attention.compress_ratios has " +
                                                 n(static_cast<uint32_t>(compress_ratios.size())) +
                                                 " entries, block_count is " + n(n_layer));
  bool any_indexer = false;
  for (size_t l = 0; l < compress_ratios.size(); ++l) {
    uint32_t r = compress_ratios[l];
    require(r == 0 || r >= 2, "attention.compress_ratios[" + std::to_string(l) + "] = " + n(r) +
                                  " (must be 0 or >= 2)");
    if (l >= n_layer) {
      require(r == 0, "compress_ratios entries of MTP blocks must be 0");
    }
    any_indexer |= r == 4;
  }
  if (any_indexer) {
    // The indexer rotates its queries and keys with a Hadamard transform of this size.
    require(is_power_of_two(indexer_head_dim),
            "attention.indexer.key_length must be a power of two, is " + n(indexer_head_dim));
    require(indexer_heads >= 1 && indexer_top_k >= 1, "indexer heads and top_k must be > 0");
  }
  require(n_expert >= 1 && n_expert_used >= 1 && n_expert_used <= n_expert,
          "expert_used_count (" + n(n_expert_used) + ") must be in 1..expert_count (" +
              n(n_expert) + ")");
  require(n_expert_shared == 1, "expert_shared_count must be 1, is " + n(n_expert_shared));
  require(expert_ffn >= 1, "expert_feed_forward_length must be > 0");
  require(n_hash_layers <= n_layer, "hash_layer_count exceeds block_count");
  require(swiglu_clamp.size() >= n_layer, "swiglu_clamp_exp has " +
                                              n(static_cast<uint32_t>(swiglu_clamp.size())) +
                                              " entries, block_count is " + n(n_layer));
  require(hc_count >= 1 && hc_sinkhorn_iters >= 1, "hyper-connection count and iterations > 0");
  require(n_mtp <= 1, "at most one MTP block is supported, nextn_predict_layers is " + n(n_mtp));
  require(rms_eps > 0 && hc_eps > 0, "epsilons must be > 0");
}

}  // namespace magnetar::model
