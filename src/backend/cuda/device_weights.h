// The model's weights in device memory, in their stored (quantized) types.
//
// upload_weights() copies every tensor bound by model::bind_weights to the GPU through pinned
// staging buffers (host_upload.h), with a progress line on stderr that ends with the upload's
// time and rate, and mirrors model::ModelWeights field by field, so that the forward pass reads
// `layer.q_b` on the GPU as the CPU reference does on the host. Matrices stay in their GGUF type
// and are decoded inside the matrix kernels (linear.cuh); the small vectors the CPU decodes to
// float once (norms, HC scales and bases, sinks, router bias, compressor position biases) are
// uploaded as float.
//
// Routed experts are reached through a per-projection table of device pointers, one per expert
// (DeviceExperts), so that an expert may live anywhere: in the uploaded tensor, or in a slot of the
// expert cache when the weights do not fit in device memory (expert_cache.h).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "backend/cuda/device_array.h"
#include "backend/cuda/host_upload.h"
#include "model/model_config.h"
#include "model/model_weights.h"
#include "quant/ggml_type.h"

namespace magnetar::gpu {

// A weight matrix in device memory; GGUF order: `cols` inputs per row, `rows` outputs.
struct DeviceMatrix {
  const char* name = nullptr;
  quant::GgmlType type = quant::GgmlType::kF32;
  const uint8_t* data = nullptr;  // device memory; null for the shape of an expert table
  int64_t cols = 0;
  int64_t rows = 0;
  int64_t row_bytes = 0;

  int64_t bytes() const { return rows * row_bytes; }
  // Rows [first, first + count) as a matrix of their own (grouped projections).
  DeviceMatrix row_slice(int64_t first, int64_t count) const {
    DeviceMatrix m = *this;
    m.data = data + first * row_bytes;
    m.rows = count;
    return m;
  }
};

// One projection of the routed experts: the shape of one expert's matrix and a device array of
// `count` pointers, entry e being where expert e's matrix lies.
struct DeviceExperts {
  DeviceMatrix shape;
  int64_t count = 0;
  const uint8_t* const* table = nullptr;
};

struct DeviceHyperConnection {
  DeviceMatrix fn;
  const float* scale = nullptr;  // [3]
  const float* base = nullptr;   // [mix]
};

struct DeviceCompressor {
  const float* ape = nullptr;  // [ratio][width]
  DeviceMatrix kv, gate;
  const float* norm = nullptr;  // [head width]
  uint32_t ratio = 0;
  uint32_t width = 0;
};

struct DeviceIndexer {
  DeviceMatrix q_b, proj;
  DeviceCompressor compressor;
};

struct DeviceBlock {
  DeviceHyperConnection hc_attn, hc_ffn;
  const float* attn_norm = nullptr;
  const float* ffn_norm = nullptr;
  DeviceMatrix q_a, q_b, kv, out_a, out_b;
  const float* q_a_norm = nullptr;
  const float* kv_norm = nullptr;
  const float* sinks = nullptr;
  DeviceMatrix gate_inp;
  const float* expert_bias = nullptr;      // [E]; null in hash layers
  const int32_t* token_experts = nullptr;  // hash layers: [vocab][n_expert_used]
  DeviceExperts gate_exps, up_exps, down_exps;
  DeviceMatrix gate_shexp, up_shexp, down_shexp;
  std::optional<DeviceCompressor> compressor;  // ratio != 0
  std::optional<DeviceIndexer> indexer;        // ratio == 4
};

// The MTP block (model.md §9): projections of the next token's embedding and of the main model's
// final state, a window-only block and its own HC head. It shares the token embedding and the LM
// head with the main model.
struct DeviceMtp {
  DeviceMatrix e_proj, h_proj;
  const float* enorm = nullptr;
  const float* hnorm = nullptr;
  const float* norm = nullptr;
  const float* hc_head_base = nullptr;
  const float* hc_head_scale = nullptr;
  DeviceMatrix hc_head_fn;
  DeviceBlock block;
};

struct DeviceModelWeights {
  DeviceMatrix token_embd;
  const float* output_hc_base = nullptr;
  const float* output_hc_scale = nullptr;
  const float* output_norm = nullptr;
  DeviceMatrix output_hc_fn, output;
  std::vector<DeviceBlock> layers;
  std::optional<DeviceMtp> mtp;  // when the file has the MTP block

  // The device memory behind the pointers above.
  std::vector<DeviceArray<uint8_t>> storage;
  size_t device_bytes = 0;  // bytes in device memory (uploaded or adopted)
  UploadStats upload;       // the copy's bytes, wall time and rate
};

struct UploadOptions {
  bool progress = true;  // a progress line on stderr
  // Leaves the routed experts in host memory: their tables stay null until an ExpertCache
  // (expert_cache.h) takes them over.
  bool experts_on_host = false;
  // The matrices' data (routed experts included, unless on the host) already lie in device memory
  // (synthetic_weights.h): they are used in place and only the vectors and tables are copied.
  bool adopt_device_matrices = false;
};

// Uploads the weights of `host` (bound to a file that outlives the result), the MTP block included
// when present (its routed experts always go to device memory: one block's worth). Every copy has
// completed when it returns. Throws std::runtime_error on a CUDA failure.
DeviceModelWeights upload_weights(const model::ModelWeights& host, const model::ModelConfig& config,
                                  const UploadOptions& options);

// Bytes upload_weights would put in device memory: everything, and the main layers' routed
// experts alone (what may stay in host memory).
struct WeightBytes {
  size_t total = 0;
  size_t routed_experts = 0;
};
WeightBytes weight_bytes(const model::ModelWeights& host, const model::ModelConfig& config);

}  // namespace magnetar::gpu
