// The CPU reference backend: the complete DeepSeek V4 forward pass in float32.
//
// This is Magnetar's source of truth: every other backend is tested against it, so it favours
// being obviously right over being fast. It follows shared/spec/model.md section by section
// (hyper-connections §5, attention §6, MoE §7, head §8, MTP §9, state §10); docs/numerics.md says
// where it departs from the official bf16 arithmetic and why.
//
// A forward call advances several sequences ("items"), each by a chunk of its tokens. A chunk is
// defined to give exactly the results of feeding its tokens one at a time (§6.9), so prefill can be
// chunked freely and decode is a chunk of one.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "backend/cpu/numerics.h"
#include "backend/cpu/sequence_state.h"
#include "backend/cpu/thread_pool.h"
#include "gguf/gguf_reader.h"
#include "model/model_config.h"
#include "model/model_weights.h"

namespace magnetar::cpu {

struct CpuOptions {
  // Keep the FP8/FP4 simulations of the official model: FP8 rounding of the inputs of FP8/FP4
  // linear layers, of KV rows and attention-compressor rows, FP4 rounding of indexer queries and
  // keys. Off ("plain") matches references that lack them, such as Hugging Face's.
  bool official_numerics = true;
  unsigned threads = 0;  // 0: all hardware threads
};

struct ForwardItem {
  SequenceState* state = nullptr;
  std::span<const int32_t> tokens;  // at positions state->position, state->position + 1, ...
  bool all_logits = false;          // logits of every token; otherwise of the last only
  bool mtp_logits = false;          // also return the MTP block's draft logits

  // Outputs.
  std::vector<float> logits;  // [n][vocab], n = tokens.size() or 1
  // MTP logits of positions mtp_first_position.. (one row per position): positions completed in
  // this call, whose next token is now known, then the draft of the last token (whose next token
  // is taken as the argmax of its main logits). Rows for earlier positions replace the drafts an
  // earlier call returned for them.
  std::vector<float> mtp;
  int64_t mtp_first_position = 0;
};

class CpuModel {
 public:
  // Binds the weights of `file`, which must outlive the model. Throws model::ConfigError.
  CpuModel(const gguf::GgufFile& file, CpuOptions options);

  const model::ModelConfig& config() const { return config_; }
  bool has_mtp() const { return weights_.mtp.has_value(); }
  unsigned threads() const { return pool_.size(); }

  // A fresh sequence; with MTP (when the model has the block) the MTP window is kept up to date.
  SequenceState new_sequence(bool with_mtp) const;

  // Advances every item by its tokens. Items are independent sequences and may differ in length
  // and position. Throws std::invalid_argument for an out-of-range token id. One call at a time:
  // the model's thread pool serves one forward pass.
  void forward(std::span<ForwardItem> items);

 private:
  struct Block {
    const model::BlockWeights* weights;
    uint32_t ratio;
    const RopeTable* rope;
    float swiglu_clamp;
    int layer;  // -1: the MTP block
  };

  void forward_item(ForwardItem& item);
  // Runs one transformer block over X ([n][HC][D]) at positions first.., in place.
  void run_block(const Block& block, LayerState& state, ForwardCounters& counters,
                 const int32_t* tokens, int64_t first, int64_t n, float* X, bool commit);
  // hc_head → norm → LM head for n states.
  void head(const model::WeightMatrix& hc_fn, const std::vector<float>& hc_scale,
            const std::vector<float>& hc_base, const std::vector<float>& norm, const float* X,
            int64_t n, float* logits);
  // The MTP block over n positions with final states Hs and next tokens; logits per position.
  void run_mtp(SequenceState& state, const float* Hs, const int32_t* next_tokens, int64_t first,
               int64_t n, bool commit, float* logits);

  model::ModelConfig config_;
  model::ModelWeights weights_;
  CpuOptions options_;
  mutable ThreadPool pool_;
  RopeTable rope_window_;      // window-only layers and the MTP block: base, no YaRN
  RopeTable rope_compressed_;  // compressed layers: compressed base with YaRN
};

}  // namespace magnetar::cpu
