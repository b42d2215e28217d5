#include "backend/cuda/cuda_model.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "backend/cpu/numerics.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/embedding.cuh"
#include "backend/cuda/hyper_connections.cuh"
#include "backend/cuda/linear.cuh"
#include "backend/cuda/numerics.cuh"

namespace magnetar::gpu {
namespace {

// Device memory kept free for sequence states, scratch and the CUDA context when the weights'
// budget is taken from the free memory. A 2048-token prefill chunk needs about 3 GiB of scratch
// (queries and attention outputs of 64 heads × 512 dims, attention probabilities, expert
// activations) beside the 512 MiB of f16 weights of the tensor-core path and cuBLAS's workspace:
// with 2 GiB such a chunk ran out of memory on an 80 GB H100 whose experts spill to host memory.
constexpr size_t kReserve = size_t{6} << 30;

std::vector<float> frequencies(const cpu::RopeTable& table) {
  std::vector<float> f(static_cast<size_t>(table.dims() / 2));
  for (size_t j = 0; j < f.size(); ++j) f[j] = table.frequency(static_cast<int>(j));
  return f;
}

std::shared_ptr<const StateLayout> make_layout(const model::ModelConfig& c, const CudaOptions& o,
                                               bool has_mtp) {
  auto layout = std::make_shared<StateLayout>();
  layout->has_mtp = has_mtp;
  layout->config = c;
  layout->kv = kv_row_codec(static_cast<int32_t>(c.head_dim), static_cast<int32_t>(c.rope_dim),
                            o.official_numerics);
  layout->indexer =
      indexer_row_codec(static_cast<int32_t>(c.indexer_head_dim), o.official_numerics);
  layout->context = o.context > 0 ? o.context : static_cast<int64_t>(c.n_ctx_train);
  return layout;
}

// The model shapes the kernels rely on; anything else is refused at load with its reason.
void check_supported(const model::ModelConfig& c) {
  auto require = [](bool ok, const std::string& what) {
    if (!ok) throw std::invalid_argument("the CUDA backend cannot run this model: " + what);
  };
  require(c.head_dim > c.rope_dim && c.rope_dim % 2 == 0 && (c.head_dim - c.rope_dim) % 2 == 0,
          "head_dim and rope_dim must be even with head_dim > rope_dim");
  const uint32_t id = c.indexer_head_dim;
  bool any_indexer = false;
  for (uint32_t l = 0; l < c.n_layer; ++l) any_indexer = any_indexer || c.ratio(l) == 4;
  require(!any_indexer || (id >= c.rope_dim && (id & (id - 1)) == 0),
          "the indexer head dim must be a power of two at least rope_dim");
  require(c.head_dim <= 8192 && id <= 8192, "head dims above 8192");
}

// The hash routing table comes from the file: an id outside the experts would make the kernels
// read outside the weights.
void check_token_experts(const model::BlockWeights& block, const model::ModelConfig& c) {
  if (block.token_experts == nullptr) return;
  const size_t n = static_cast<size_t>(c.n_vocab) * c.n_expert_used;
  for (size_t i = 0; i < n; ++i) {
    if (block.token_experts[i] < 0 || block.token_experts[i] >= static_cast<int32_t>(c.n_expert)) {
      throw model::ConfigError("ffn_gate_tid2eid names expert " +
                               std::to_string(block.token_experts[i]) + ", outside the " +
                               std::to_string(c.n_expert) + " experts");
    }
  }
}

int64_t argmax(const float* v, int64_t n) {
  return std::max_element(v, v + n) - v;  // the first maximum, as cpu::CpuModel takes it
}

// Device memory the weights may take: the option, or the free memory less the reserve.
size_t weight_budget(const CudaOptions& o) {
  if (o.gpu_mem != 0) return o.gpu_mem;
  size_t free = 0, total = 0;
  MAGNETAR_CUDA_CHECK(cudaMemGetInfo(&free, &total));
  return free > kReserve ? free - kReserve : 0;
}

// Where the weights go: all on the device when they fit, else the routed experts on the host
// (throws when even the rest does not fit).
UploadOptions placement(const WeightBytes& sizes, size_t budget, bool progress) {
  UploadOptions upload;
  upload.progress = progress;
  upload.experts_on_host = sizes.total > budget;
  const size_t resident = sizes.total - sizes.routed_experts;
  if (upload.experts_on_host && resident >= budget) {
    throw std::runtime_error("the model's weights other than routed experts (" +
                             std::to_string(resident >> 20) + " MiB) do not fit in " +
                             std::to_string(budget >> 20) + " MiB of device memory");
  }
  return upload;
}

// The matrix-product path of the calling thread for one forward pass: the CPU's order with
// CudaOptions::reference_order (or when the caller already asked for it), else the fast kernels
// with the model's tensor-core GEMMs.
class MatmulScope {
 public:
  MatmulScope(bool reference, TensorCoreGemm* tensor_cores)
      : previous_(reference_order()), tensor_cores_(reference ? nullptr : tensor_cores) {
    set_reference_order(reference || previous_);
  }
  ~MatmulScope() { set_reference_order(previous_); }
  MatmulScope(const MatmulScope&) = delete;
  MatmulScope& operator=(const MatmulScope&) = delete;

 private:
  bool previous_;
  ScopedTensorCoreGemm tensor_cores_;
};

}  // namespace

CudaModel::CudaModel(const gguf::GgufFile& file, const CudaOptions& options)
    : config_(model::ModelConfig::from_metadata(file.metadata())),
      options_(options),
      host_weights_(model::bind_weights(file, config_)) {
  if (options.context < 0) throw std::invalid_argument("context must not be negative");
  check_supported(config_);
  for (const model::BlockWeights& layer : host_weights_.layers) check_token_experts(layer, config_);
  if (host_weights_.mtp) check_token_experts(host_weights_.mtp->block, config_);
  MAGNETAR_CUDA_CHECK(cudaSetDevice(options.device));

  const WeightBytes sizes = weight_bytes(host_weights_, config_);
  const size_t budget = weight_budget(options);
  const UploadOptions upload = placement(sizes, budget, options.progress);
  weights_ = upload_weights(host_weights_, config_, upload);
  if (upload.experts_on_host) {
    cache_ = std::make_unique<ExpertCache>(host_weights_, weights_,
                                           budget - (sizes.total - sizes.routed_experts));
  }
  init_runtime();
}

CudaModel::CudaModel(const model::ModelConfig& config, const SyntheticSpec& spec,
                     const CudaOptions& options)
    : config_(config), options_(options) {
  if (options.context < 0) throw std::invalid_argument("context must not be negative");
  config_.validate();
  check_supported(config_);
  MAGNETAR_CUDA_CHECK(cudaSetDevice(options.device));

  const WeightBytes sizes = synthetic_weight_bytes(config_, spec);
  const size_t budget = weight_budget(options);
  UploadOptions upload = placement(sizes, budget, options.progress);
  synthetic_ = make_synthetic_weights(config_, spec, upload.experts_on_host, options.progress);
  host_weights_ = synthetic_->weights;
  upload.adopt_device_matrices = true;
  weights_ = upload_weights(host_weights_, config_, upload);
  if (upload.experts_on_host) {
    cache_ = std::make_unique<ExpertCache>(host_weights_, weights_,
                                           budget - (sizes.total - sizes.routed_experts));
  }
  init_runtime();
}

void CudaModel::init_runtime() {
  layout_ = make_layout(config_, options_, weights_.mtp.has_value());
  const cpu::RopeTable window(static_cast<int>(config_.rope_dim), config_.rope_base, std::nullopt);
  const cpu::RopeTable compressed(static_cast<int>(config_.rope_dim), config_.compress_rope_base,
                                  cpu::YarnParams{config_.rope_scale_factor, config_.rope_orig_ctx,
                                                  config_.yarn_beta_fast, config_.yarn_beta_slow});
  rope_window_ = DeviceArray<float>(std::span<const float>(frequencies(window)));
  rope_compressed_ = DeviceArray<float>(std::span<const float>(frequencies(compressed)));
  // A blocking stream: it orders itself after the synchronous copies of DeviceArray (legacy default
  // stream), which fill states and batch inputs (the weights' copies completed in upload_weights).
  MAGNETAR_CUDA_CHECK(cudaStreamCreate(&stream_));
  if (!options_.reference_order) tensor_cores_ = std::make_unique<TensorCoreGemm>();
}

CudaModel::~CudaModel() {
  if (stream_ != nullptr) {
    cudaStreamSynchronize(stream_);
    cudaStreamDestroy(stream_);
  }
}

void CudaModel::run_block(const DeviceBlock& w, uint32_t ratio, float swiglu_clamp, int layer,
                          bool commit, std::span<const AttentionItem> items, int64_t n) {
  const model::ModelConfig& c = config_;
  const int64_t D = c.n_embd;
  const HcMixDevice mix{post_.data(), comb_.data()};

  hc_pre_cuda(c, w.hc_attn, X_.data(), n, y_.data(), mix, mixer_.data(), stream_);
  rms_norm_rows_cuda(y_.data(), w.attn_norm, y_.data(), n, D, c.rms_eps, stream_);
  const AttentionContext actx{*layout_,
                              w,
                              ratio == 0 ? rope_window_.data() : rope_compressed_.data(),
                              ratio,
                              options_.official_numerics,
                              commit};
  attention_chunk_cuda(actx, items, positions_.data(), y_.data(), n, f_.data(), attention_,
                       stream_);
  hc_post_cuda(c, mix, f_.data(), X_.data(), n, X_next_.data(), stream_);
  std::swap(X_, X_next_);

  hc_pre_cuda(c, w.hc_ffn, X_.data(), n, y_.data(), mix, mixer_.data(), stream_);
  rms_norm_rows_cuda(y_.data(), w.ffn_norm, y_.data(), n, D, c.rms_eps, stream_);
  const MoeContext mctx{
      c, w, swiglu_clamp, options_.official_numerics, layer, layer >= 0 ? cache_.get() : nullptr};
  moe_chunk_cuda(mctx, tokens_.data(), y_.data(), n, f_.data(), moe_, stream_);
  hc_post_cuda(c, mix, f_.data(), X_.data(), n, X_next_.data(), stream_);
  std::swap(X_, X_next_);
}

void CudaModel::forward(std::span<Item> items) {
  const model::ModelConfig& c = config_;
  const int64_t D = c.n_embd, hc = c.hc_count, V = c.n_vocab, W = c.sliding_window;
  MAGNETAR_CUDA_CHECK(cudaSetDevice(options_.device));
  const MatmulScope matmul(options_.reference_order, tensor_cores_.get());

  // The batch on the host: tokens, positions, the rows whose logits are wanted, and the sizes the
  // scratch buffers need.
  std::vector<int32_t> tokens, positions, head_rows;
  int64_t item_tokens = 0, max_rows = W, max_index_rows = 1;
  for (Item& item : items) {
    const int64_t first = item.state->position(), T = static_cast<int64_t>(item.tokens.size());
    const int64_t end = first + T;
    for (int64_t i = 0; i < T; ++i) {
      if (item.all_logits || i == T - 1) head_rows.push_back(static_cast<int32_t>(tokens.size()));
      tokens.push_back(item.tokens[i]);
      positions.push_back(static_cast<int32_t>(first + i));
    }
    item_tokens = std::max(item_tokens, T);
    for (uint32_t l = 0; l < c.n_layer; ++l) {
      const int64_t r = c.ratio(l);
      if (r == 0) continue;
      max_rows =
          std::max(max_rows, W + (r == 4 ? std::min<int64_t>(c.indexer_top_k, end / 4) : end / r));
      if (r == 4) max_index_rows = std::max(max_index_rows, end / 4);
    }
    item.state->reserve(end);
  }
  const int64_t n = static_cast<int64_t>(tokens.size());
  const int64_t n_out = static_cast<int64_t>(head_rows.size());
  if (n == 0) return;

  // Scratch (the stream is idle: the previous call ended with a synchronization).
  ensure_size(tokens_, n);
  ensure_size(positions_, n);
  ensure_size(head_rows_, n_out);
  for (DeviceArray<float>* a : {&X_, &X_next_}) ensure_size(*a, static_cast<size_t>(n * hc * D));
  ensure_size(y_, static_cast<size_t>(n * D));
  ensure_size(f_, static_cast<size_t>(n * D));
  ensure_size(post_, static_cast<size_t>(n * hc));
  ensure_size(comb_, static_cast<size_t>(n * hc * hc));
  ensure_size(mixer_, static_cast<size_t>(n * c.hc_mix()));
  ensure_size(head_X_, static_cast<size_t>(n_out * hc * D));
  ensure_size(head_y_, static_cast<size_t>(n_out * D));
  ensure_size(logits_, static_cast<size_t>(n_out * V));
  attention_.reserve(*layout_, n, item_tokens, max_rows, max_index_rows);
  moe_.reserve(c, n);

  tokens_.upload(tokens);
  positions_.upload(positions);
  head_rows_.upload(head_rows);

  // Embedding, copied into every hyper-connection stream (§4), then the blocks.
  embed_tokens_cuda(weights_.token_embd, tokens_.data(), n, static_cast<int>(hc), X_.data(),
                    stream_);
  std::vector<AttentionItem> layer_items(items.size());
  int64_t offset = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    layer_items[i].first = items[i].state->position();
    layer_items[i].n_tokens = static_cast<int64_t>(items[i].tokens.size());
    layer_items[i].offset = offset;
    offset += layer_items[i].n_tokens;
  }
  for (uint32_t l = 0; l < c.n_layer; ++l) {
    for (size_t i = 0; i < items.size(); ++i) layer_items[i].state = &items[i].state->layer(l);
    run_block(weights_.layers[l], c.ratio(l), c.swiglu_clamp[l], static_cast<int>(l),
              /*commit=*/true, layer_items, n);
  }

  // hc_head → norm → LM head for the rows whose logits are wanted (§8).
  gather_rows_cuda(X_.data(), head_rows_.data(), n_out, hc * D, head_X_.data(), stream_);
  hc_head_cuda(c, weights_.output_hc_fn, weights_.output_hc_scale, weights_.output_hc_base,
               head_X_.data(), n_out, head_y_.data(), mixer_.data(), stream_);
  rms_norm_rows_cuda(head_y_.data(), weights_.output_norm, head_y_.data(), n_out, D, c.rms_eps,
                     stream_);
  linear_cuda(weights_.output, head_y_.data(), n_out, logits_.data(), stream_);
  std::vector<float> logits(static_cast<size_t>(n_out * V));
  MAGNETAR_CUDA_CHECK(cudaMemcpyAsync(logits.data(), logits_.data(), logits.size() * sizeof(float),
                                      cudaMemcpyDeviceToHost, stream_));
  MAGNETAR_CUDA_CHECK(cudaStreamSynchronize(stream_));

  int64_t row = 0;
  std::vector<int64_t> last_rows;
  for (Item& item : items) {
    const int64_t T = static_cast<int64_t>(item.tokens.size());
    const int64_t rows = item.all_logits ? T : 1;
    item.logits->assign(logits.begin() + row * V, logits.begin() + (row + rows) * V);
    row += rows;
    last_rows.push_back(row - 1);
  }
  forward_mtp(items, logits, last_rows);
  for (Item& item : items) item.state->advance(static_cast<int64_t>(item.tokens.size()));
}

void CudaModel::forward_mtp(std::span<Item> items, std::span<const float> main_logits,
                            std::span<const int64_t> last_rows) {
  const model::ModelConfig& c = config_;
  const int64_t width = c.hc_count * c.n_embd, V = c.n_vocab;

  // The main model's final states leave X_ before the MTP block reuses it: per item, its pending
  // state (the previous call's last position) and then the states of this call's positions.
  std::vector<int64_t> base(items.size(), -1);
  int64_t total = 0, offset = 0, most = 1;
  for (size_t i = 0; i < items.size(); ++i) {
    const int64_t T = static_cast<int64_t>(items[i].tokens.size());
    if (items[i].state->has_mtp()) {
      base[i] = total;
      total += (items[i].state->has_mtp_pending() ? 1 : 0) + T;
      most = std::max(most, T);
    }
  }
  if (total == 0) return;
  ensure_size(mtp_hs_, static_cast<size_t>(total * width));
  ensure_size(head_y_, static_cast<size_t>(most * c.n_embd));
  ensure_size(logits_, static_cast<size_t>(most * V));
  for (size_t i = 0; i < items.size(); ++i) {
    const int64_t T = static_cast<int64_t>(items[i].tokens.size());
    if (base[i] >= 0) {
      DeviceSequenceState& s = *items[i].state;
      float* dst = mtp_hs_.data() + base[i] * width;
      const size_t row_bytes = static_cast<size_t>(width) * sizeof(float);
      if (s.has_mtp_pending()) {
        MAGNETAR_CUDA_CHECK(
            cudaMemcpyAsync(dst, s.mtp_pending(), row_bytes, cudaMemcpyDeviceToDevice, stream_));
        dst += width;
      }
      MAGNETAR_CUDA_CHECK(cudaMemcpyAsync(dst, X_.data() + offset * width, T * row_bytes,
                                          cudaMemcpyDeviceToDevice, stream_));
    }
    offset += T;
  }

  // As cpu::CpuModel: the block at position p needs the token of p + 1, so a call completes the
  // previous call's last position and its own positions but the last, which gets a draft
  // evaluation with the argmax token and stays pending until its real successor arrives.
  for (size_t i = 0; i < items.size(); ++i) {
    if (base[i] < 0) continue;
    Item& item = items[i];
    DeviceSequenceState& s = *item.state;
    const int64_t T = static_cast<int64_t>(item.tokens.size());
    const int64_t pending = s.has_mtp_pending() ? 1 : 0, first = s.position() - pending;
    const int64_t n_commit = pending + T - 1;
    const float* hs = mtp_hs_.data() + base[i] * width;
    std::vector<float> out(static_cast<size_t>((n_commit + 1) * V));
    if (n_commit > 0) {
      run_mtp(s, hs, item.tokens.subspan(static_cast<size_t>(1 - pending)).first(n_commit), first,
              /*commit=*/true, out.data());
    }
    const int32_t draft = static_cast<int32_t>(argmax(main_logits.data() + last_rows[i] * V, V));
    run_mtp(s, hs + n_commit * width, std::span<const int32_t>(&draft, 1), first + n_commit,
            /*commit=*/false, out.data() + n_commit * V);
    MAGNETAR_CUDA_CHECK(cudaMemcpy(s.mtp_pending(), hs + n_commit * width,
                                   static_cast<size_t>(width) * sizeof(float),
                                   cudaMemcpyDeviceToDevice));
    s.set_mtp_pending();
    if (item.mtp_logits) {
      *item.mtp = std::move(out);
      *item.mtp_first_position = first;
    }
  }
}

void CudaModel::run_mtp(DeviceSequenceState& state, const float* Hs,
                        std::span<const int32_t> next_tokens, int64_t first, bool commit,
                        float* logits) {
  const model::ModelConfig& c = config_;
  const DeviceMtp& m = *weights_.mtp;
  const int64_t D = c.n_embd, hc = c.hc_count, V = c.n_vocab;
  const int64_t n = static_cast<int64_t>(next_tokens.size());
  std::vector<int32_t> positions(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) positions[i] = static_cast<int32_t>(first + i);
  tokens_.upload(next_tokens);
  positions_.upload(positions);

  // X0[h] = e_proj(norm(embed(τ'))) + h_proj(norm(Hs[h])) (model.md §9.1), in the CPU's order.
  float* e = y_.data();
  float* hn = X_next_.data();
  embed_tokens_cuda(weights_.token_embd, tokens_.data(), n, 1, e, stream_);
  rms_norm_rows_cuda(e, m.enorm, e, n, D, c.rms_eps, stream_);
  rms_norm_rows_cuda(Hs, m.hnorm, hn, n * hc, D, c.rms_eps, stream_);
  if (options_.official_numerics) {
    act_quant_fp8_cuda(e, n, D, e, stream_);
    act_quant_fp8_cuda(hn, n * hc, D, hn, stream_);
  }
  linear_cuda(m.e_proj, e, n, f_.data(), stream_);
  linear_cuda(m.h_proj, hn, n * hc, X_.data(), stream_);
  add_to_streams_cuda(f_.data(), n, static_cast<int>(hc), D, X_.data(), stream_);

  const AttentionItem item{&state.mtp_layer(), first, n, 0};
  const float clamp = c.swiglu_clamp.empty() ? 10.0f : c.swiglu_clamp.back();
  run_block(m.block, 0, clamp, /*layer=*/-1, commit, std::span<const AttentionItem>(&item, 1), n);

  hc_head_cuda(c, m.hc_head_fn, m.hc_head_scale, m.hc_head_base, X_.data(), n, head_y_.data(),
               mixer_.data(), stream_);
  rms_norm_rows_cuda(head_y_.data(), m.norm, head_y_.data(), n, D, c.rms_eps, stream_);
  linear_cuda(weights_.output, head_y_.data(), n, logits_.data(), stream_);
  MAGNETAR_CUDA_CHECK(cudaMemcpyAsync(logits, logits_.data(),
                                      static_cast<size_t>(n * V) * sizeof(float),
                                      cudaMemcpyDeviceToHost, stream_));
  MAGNETAR_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

}  // namespace magnetar::gpu
