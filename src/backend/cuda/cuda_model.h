// The DeepSeek V4 forward pass on one CUDA GPU: the twin of cpu::CpuModel (cpu_model.h), block by
// block, on weights and sequence states in device memory.
//
// A forward call advances several sequences, each by a chunk of its tokens; the batch's tokens are
// processed together wherever the computation is per token (projections, norms, hyper-connections,
// experts), and sequence by sequence where it reads a sequence's state (compressors, indexer,
// attention). Every kernel keeps the CPU reference's operation order, and its matrix products are
// bit-identical to the CPU's, so the GPU stays within a few float32 roundings of the reference and
// a chunk gives the same bits however it is split or batched.
//
// Sequences created with MTP state also run the MTP block after the main pass, exactly as
// cpu::CpuModel does: the positions whose next token is now known are committed to the block's
// window, and the last position gets a draft evaluation with the argmax of its main logits.
//
// Kernels are enqueued on one stream; forward() returns after the logits have been copied back.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "backend/cuda/attention.cuh"
#include "backend/cuda/cuda_sequence_state.h"
#include "backend/cuda/device_array.h"
#include "backend/cuda/device_weights.h"
#include "backend/cuda/expert_cache.h"
#include "backend/cuda/gemm_tc.cuh"
#include "backend/cuda/moe.cuh"
#include "backend/cuda/synthetic_weights.h"
#include "gguf/gguf_reader.h"
#include "model/model_config.h"
#include "model/model_weights.h"

namespace magnetar::gpu {

struct CudaOptions {
  int device = 0;       // CUDA device ordinal
  int64_t context = 0;  // the most tokens a sequence may hold; 0: the model's training context
  bool official_numerics = true;  // the FP8/FP4 simulations of cpu::CpuOptions
  // Device memory the weights may take, in bytes; 0: the device's free memory less a reserve for
  // sequence states and scratch. When the weights do not fit, routed experts stay in host memory
  // and are served by an expert cache (expert_cache.h).
  size_t gpu_mem = 0;
  bool progress = true;  // the weight upload's progress line on stderr
  // Every matrix product in the CPU reference's summation order: bit-identical products, slow.
  // Otherwise (the default) few tokens take the fast GEMV (gemv.cuh) and many tokens tensor cores
  // (gemm_tc.cuh), within the error bounds their headers give.
  bool reference_order = false;
};

class CudaModel {
 public:
  // Binds and uploads the weights of `file`, which must outlive the model. Throws
  // model::ConfigError for an invalid model, std::invalid_argument for bad options and
  // std::runtime_error for CUDA failures (no device, out of memory).
  CudaModel(const gguf::GgufFile& file, const CudaOptions& options);
  // A model of `config` with random weights made in device memory (synthetic_weights.h); the
  // routed experts go to host memory and the expert cache when they do not fit. Same errors.
  CudaModel(const model::ModelConfig& config, const SyntheticSpec& spec,
            const CudaOptions& options);
  ~CudaModel();
  CudaModel(const CudaModel&) = delete;
  CudaModel& operator=(const CudaModel&) = delete;

  const model::ModelConfig& config() const { return config_; }
  const std::shared_ptr<const StateLayout>& layout() const { return layout_; }
  // The expert cache, or null when every weight is in device memory.
  const ExpertCache* expert_cache() const { return cache_.get(); }
  // What the weight upload copied and how long it took.
  const UploadStats& upload_stats() const { return weights_.upload; }

  struct Item {
    DeviceSequenceState* state = nullptr;
    std::span<const int32_t> tokens;  // valid ids, at positions state->position().. (checked by
                                      // the caller, as is the context)
    bool all_logits = false;
    std::vector<float>* logits = nullptr;  // output: [n][vocab], n = tokens.size() or 1
    // With MTP state: the MTP logits and their first position (backend::ForwardItem::mtp) are
    // written when mtp_logits is set; the MTP state advances either way.
    bool mtp_logits = false;
    std::vector<float>* mtp = nullptr;
    int64_t* mtp_first_position = nullptr;
  };
  void forward(std::span<Item> items);

 private:
  // One block over the batch's X_. `layer` indexes the expert cache (-1: all experts resident);
  // commit = false leaves the window rings as they were (an MTP draft).
  void run_block(const DeviceBlock& w, uint32_t ratio, float swiglu_clamp, int layer, bool commit,
                 std::span<const AttentionItem> items, int64_t n);
  // The MTP block over n positions from `first` of `state`: Hs ([n][hc][D], device) are the main
  // model's final states there and next_tokens their successors; writes n rows of logits.
  void run_mtp(DeviceSequenceState& state, const float* Hs, std::span<const int32_t> next_tokens,
               int64_t first, bool commit, float* logits);
  // The MTP work of every item with MTP state, after the main pass left its states in X_.
  void forward_mtp(std::span<Item> items, std::span<const float> main_logits,
                   std::span<const int64_t> logit_rows);
  // The state layout, RoPE tables and stream, once the weights are in place.
  void init_runtime();

  model::ModelConfig config_;
  CudaOptions options_;
  model::ModelWeights host_weights_;
  std::unique_ptr<SyntheticWeights> synthetic_;  // what host_weights_ points into, if synthetic
  DeviceModelWeights weights_;
  std::unique_ptr<ExpertCache> cache_;
  std::shared_ptr<const StateLayout> layout_;
  DeviceArray<float> rope_window_, rope_compressed_;  // RoPE frequencies (cpu::RopeTable)
  cudaStream_t stream_ = nullptr;

  // Scratch, grown as batches need.
  DeviceArray<int32_t> tokens_, positions_, head_rows_;
  DeviceArray<float> X_, X_next_, y_, f_, post_, comb_, mixer_;
  DeviceArray<float> head_X_, head_y_, logits_;
  DeviceArray<float> mtp_hs_;  // the main model's final states the MTP block reads
  AttentionBuffers attention_;
  MoeBuffers moe_;
  std::unique_ptr<TensorCoreGemm> tensor_cores_;  // null with reference_order
};

}  // namespace magnetar::gpu
