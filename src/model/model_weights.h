// Typed access to the weights of a DeepSeek V4 GGUF.
//
// bind_weights() checks the file against the layout its hyperparameters imply (tensor_layout.h)
// and then maps every tensor name to a field, so that the forward pass reads `layer.attn_q_b`
// rather than looking strings up. Matrices stay in the file mapping in their stored type; small
// vectors (norms, HC scales and bases, sinks, router bias, compressor position biases) are decoded
// to float once, because they are read on every token and are tiny.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "gguf/gguf_reader.h"
#include "model/model_config.h"
#include "quant/ggml_type.h"

namespace magnetar::model {

// A weight matrix (or a stack of expert matrices) inside the file mapping. GGUF order: ne[0] is
// the input dimension (row length), ne[1] the output dimension (rows), ne[2] the expert index.
struct WeightMatrix {
  const char* name = nullptr;  // the tensor's name, for messages
  quant::GgmlType type = quant::GgmlType::kF32;
  const uint8_t* data = nullptr;
  int64_t cols = 0;       // inputs (ne[0])
  int64_t rows = 0;       // outputs (ne[1])
  int64_t experts = 1;    // ne[2] for routed experts
  int64_t row_bytes = 0;  // bytes of one row

  const uint8_t* row(int64_t r) const { return data + r * row_bytes; }
  // The matrix of one routed expert.
  WeightMatrix expert(int64_t e) const;
};

struct CompressorWeights {
  std::vector<float> ape;   // [ratio][width]: score bias by position within the block
  WeightMatrix kv;          // [width, D]
  WeightMatrix gate;        // [width, D]
  std::vector<float> norm;  // [head width]
  uint32_t ratio = 0;
  uint32_t width = 0;  // coff · head width
};

struct IndexerWeights {
  WeightMatrix q_b;   // [heads · dim, q_lora]
  WeightMatrix proj;  // [heads, D] (weights_proj)
  CompressorWeights compressor;
};

struct HyperConnectionWeights {
  WeightMatrix fn;           // [mix, HC · D]
  std::vector<float> scale;  // [3]: pre, post, comb multipliers
  std::vector<float> base;   // [mix]
};

struct BlockWeights {
  HyperConnectionWeights hc_attn, hc_ffn;
  std::vector<float> attn_norm, ffn_norm;
  WeightMatrix q_a, q_b, kv, out_a, out_b;
  std::vector<float> q_a_norm, kv_norm, sinks;
  WeightMatrix gate_inp;                   // router [E, D]
  std::vector<float> expert_bias;          // [E], empty in hash layers
  const int32_t* token_experts = nullptr;  // hash layers: [vocab][n_expert_used]
  WeightMatrix gate_exps, up_exps, down_exps;
  WeightMatrix gate_shexp, up_shexp, down_shexp;
  std::optional<CompressorWeights> compressor;  // ratio != 0
  std::optional<IndexerWeights> indexer;        // ratio == 4
};

struct MtpWeights {
  WeightMatrix e_proj, h_proj;
  std::vector<float> enorm, hnorm, norm;
  std::vector<float> hc_head_base, hc_head_scale;
  WeightMatrix hc_head_fn;
  BlockWeights block;
};

struct ModelWeights {
  WeightMatrix token_embd;  // [V, D]
  std::vector<float> output_hc_base, output_hc_scale, output_norm;
  WeightMatrix output_hc_fn;  // [HC, HC · D]
  WeightMatrix output;        // [V, D]
  std::vector<BlockWeights> layers;
  std::optional<MtpWeights> mtp;
};

// Binds every tensor. Throws ConfigError listing the layout problems (missing, mis-shaped,
// mis-typed tensors) when the file does not match `config`.
ModelWeights bind_weights(const gguf::GgufFile& file, const ModelConfig& config);

// Decodes `n` values of a stored row into floats (any type quant::dequantize_row supports).
void decode_row(const WeightMatrix& m, int64_t row, float* out);

}  // namespace magnetar::model
