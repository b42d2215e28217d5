#include "backend/cuda/device_weights.h"

#include <chrono>
#include <cstdio>
#include <string>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/host_upload.h"

namespace magnetar::gpu {
namespace {

constexpr double kMiB = 1024.0 * 1024.0;

size_t matrix_bytes(const model::WeightMatrix& m) {
  return static_cast<size_t>(m.rows * m.row_bytes * m.experts);
}

// Copies tensors to the device through the staging pipeline (host_upload.h) and reports progress
// as it goes. Each tensor gets its own device array; its bytes have landed only after finish().
class Uploader {
 public:
  Uploader(DeviceModelWeights& out, size_t total, bool progress, bool adopt_matrices)
      : out_(out),
        total_(total),
        progress_(progress),
        adopt_matrices_(adopt_matrices),
        // Adopted matrices leave only a few MiB of vectors and tables to copy: no staging.
        pipeline_(staging_for(adopt_matrices ? 0 : total)) {}

  ~Uploader() {
    if (progress_ && printed_) std::fputc('\n', stderr);
  }

  const uint8_t* bytes(const void* src, size_t n) {
    DeviceArray<uint8_t>& a = out_.storage.emplace_back(n);
    pipeline_.copy(a.data(), src, n);
    done_ += n;
    out_.device_bytes += n;
    report(/*last=*/false);
    return a.data();
  }

  // Waits for every copy and records the upload's bytes and wall time in the weights.
  void finish() {
    pipeline_.finish();
    out_.upload.bytes = done_;
    out_.upload.seconds = std::chrono::duration<double>(Clock::now() - start_).count();
    out_.upload.staged = pipeline_.staged();
    report(/*last=*/true);
  }

  DeviceMatrix matrix(const model::WeightMatrix& m) {
    DeviceMatrix d = shape(m);
    d.data = matrix_data(m);
    return d;
  }

  const float* floats(const std::vector<float>& v) {
    return reinterpret_cast<const float*>(bytes(v.data(), v.size() * sizeof(float)));
  }

  // A routed-expert projection: the stacked tensor and a table of pointers to each expert.
  DeviceExperts experts(const model::WeightMatrix& m, bool on_host) {
    DeviceExperts e;
    e.shape = shape(m);
    e.count = m.experts;
    if (on_host) return e;
    const uint8_t* base = matrix_data(m);
    std::vector<const uint8_t*> table(static_cast<size_t>(m.experts));
    for (int64_t i = 0; i < m.experts; ++i) table[i] = base + i * m.rows * m.row_bytes;
    e.table = reinterpret_cast<const uint8_t* const*>(
        bytes(table.data(), table.size() * sizeof(const uint8_t*)));
    return e;
  }

 private:
  static DeviceMatrix shape(const model::WeightMatrix& m) {
    DeviceMatrix d;
    d.name = m.name;
    d.type = m.type;
    d.cols = m.cols;
    d.rows = m.rows;
    d.row_bytes = m.row_bytes;
    return d;
  }

  // The device copy of a matrix's bytes, or the bytes themselves when they are adopted.
  const uint8_t* matrix_data(const model::WeightMatrix& m) {
    if (!adopt_matrices_) return bytes(m.data, matrix_bytes(m));
    out_.device_bytes += matrix_bytes(m);
    return m.data;
  }

  // The progress line, redrawn at each new percent; the last one adds the time and rate.
  void report(bool last) {
    if (!progress_ || total_ == 0) return;
    const int percent = static_cast<int>(100.0 * static_cast<double>(done_) / total_);
    if (percent == last_percent_ && !last) return;
    last_percent_ = percent;
    printed_ = true;
    std::fprintf(stderr, "\rmagnetar: uploading weights to the GPU: %.0f / %.0f MiB (%d%%)",
                 done_ / kMiB, total_ / kMiB, percent);
    if (last) {
      std::fprintf(stderr, " in %.1f s (%.1f GB/s)", out_.upload.seconds, out_.upload.gb_per_s());
    }
    std::fflush(stderr);
  }

  using Clock = std::chrono::steady_clock;

  DeviceModelWeights& out_;
  size_t total_;
  size_t done_ = 0;
  bool progress_;
  bool adopt_matrices_;
  bool printed_ = false;
  int last_percent_ = -1;
  Clock::time_point start_ = Clock::now();
  HostUpload pipeline_;
};

DeviceHyperConnection upload_hc(Uploader& up, const model::HyperConnectionWeights& w) {
  return {up.matrix(w.fn), up.floats(w.scale), up.floats(w.base)};
}

DeviceCompressor upload_compressor(Uploader& up, const model::CompressorWeights& w) {
  DeviceCompressor c;
  c.ape = up.floats(w.ape);
  c.kv = up.matrix(w.kv);
  c.gate = up.matrix(w.gate);
  c.norm = up.floats(w.norm);
  c.ratio = w.ratio;
  c.width = w.width;
  return c;
}

DeviceBlock upload_block(Uploader& up, const model::BlockWeights& w, const model::ModelConfig& c,
                         bool experts_on_host) {
  DeviceBlock b;
  b.hc_attn = upload_hc(up, w.hc_attn);
  b.hc_ffn = upload_hc(up, w.hc_ffn);
  b.attn_norm = up.floats(w.attn_norm);
  b.ffn_norm = up.floats(w.ffn_norm);
  b.q_a = up.matrix(w.q_a);
  b.q_b = up.matrix(w.q_b);
  b.kv = up.matrix(w.kv);
  b.out_a = up.matrix(w.out_a);
  b.out_b = up.matrix(w.out_b);
  b.q_a_norm = up.floats(w.q_a_norm);
  b.kv_norm = up.floats(w.kv_norm);
  b.sinks = up.floats(w.sinks);
  b.gate_inp = up.matrix(w.gate_inp);
  if (w.token_experts != nullptr) {
    const size_t n = static_cast<size_t>(c.n_vocab) * c.n_expert_used;
    b.token_experts = reinterpret_cast<const int32_t*>(up.bytes(w.token_experts, n * 4));
  } else {
    b.expert_bias = up.floats(w.expert_bias);
  }
  b.gate_exps = up.experts(w.gate_exps, experts_on_host);
  b.up_exps = up.experts(w.up_exps, experts_on_host);
  b.down_exps = up.experts(w.down_exps, experts_on_host);
  b.gate_shexp = up.matrix(w.gate_shexp);
  b.up_shexp = up.matrix(w.up_shexp);
  b.down_shexp = up.matrix(w.down_shexp);
  if (w.compressor) b.compressor = upload_compressor(up, *w.compressor);
  if (w.indexer) {
    b.indexer = DeviceIndexer{up.matrix(w.indexer->q_b), up.matrix(w.indexer->proj),
                              upload_compressor(up, w.indexer->compressor)};
  }
  return b;
}

DeviceMtp upload_mtp(Uploader& up, const model::MtpWeights& w, const model::ModelConfig& c) {
  DeviceMtp m;
  m.e_proj = up.matrix(w.e_proj);
  m.h_proj = up.matrix(w.h_proj);
  m.enorm = up.floats(w.enorm);
  m.hnorm = up.floats(w.hnorm);
  m.norm = up.floats(w.norm);
  m.hc_head_base = up.floats(w.hc_head_base);
  m.hc_head_scale = up.floats(w.hc_head_scale);
  m.hc_head_fn = up.matrix(w.hc_head_fn);
  m.block = upload_block(up, w.block, c, /*experts_on_host=*/false);
  return m;
}

size_t floats_bytes(const std::vector<float>& v) { return v.size() * sizeof(float); }

size_t block_bytes(const model::BlockWeights& w, const model::ModelConfig& c, size_t* experts) {
  size_t n = 0;
  for (const model::HyperConnectionWeights* hc : {&w.hc_attn, &w.hc_ffn}) {
    n += matrix_bytes(hc->fn) + floats_bytes(hc->scale) + floats_bytes(hc->base);
  }
  for (const std::vector<float>* v :
       {&w.attn_norm, &w.ffn_norm, &w.q_a_norm, &w.kv_norm, &w.sinks, &w.expert_bias}) {
    n += floats_bytes(*v);
  }
  for (const model::WeightMatrix* m : {&w.q_a, &w.q_b, &w.kv, &w.out_a, &w.out_b, &w.gate_inp,
                                       &w.gate_shexp, &w.up_shexp, &w.down_shexp}) {
    n += matrix_bytes(*m);
  }
  if (w.token_experts != nullptr) n += static_cast<size_t>(c.n_vocab) * c.n_expert_used * 4;
  for (const model::WeightMatrix* m : {&w.gate_exps, &w.up_exps, &w.down_exps}) {
    const size_t with_table = matrix_bytes(*m) + static_cast<size_t>(m->experts) * sizeof(void*);
    *experts += with_table;
    n += with_table;
  }
  auto compressor = [&](const model::CompressorWeights& cw) {
    n += floats_bytes(cw.ape) + matrix_bytes(cw.kv) + matrix_bytes(cw.gate) + floats_bytes(cw.norm);
  };
  if (w.compressor) compressor(*w.compressor);
  if (w.indexer) {
    n += matrix_bytes(w.indexer->q_b) + matrix_bytes(w.indexer->proj);
    compressor(w.indexer->compressor);
  }
  return n;
}

}  // namespace

WeightBytes weight_bytes(const model::ModelWeights& w, const model::ModelConfig& c) {
  WeightBytes b;
  b.total = matrix_bytes(w.token_embd) + floats_bytes(w.output_hc_base) +
            floats_bytes(w.output_hc_scale) + floats_bytes(w.output_norm) +
            matrix_bytes(w.output_hc_fn) + matrix_bytes(w.output);
  for (const model::BlockWeights& layer : w.layers)
    b.total += block_bytes(layer, c, &b.routed_experts);
  if (w.mtp) {
    const model::MtpWeights& m = *w.mtp;
    size_t resident_experts = 0;  // the MTP block's experts never leave device memory
    b.total += block_bytes(m.block, c, &resident_experts) + matrix_bytes(m.e_proj) +
               matrix_bytes(m.h_proj) + matrix_bytes(m.hc_head_fn);
    for (const std::vector<float>* v :
         {&m.enorm, &m.hnorm, &m.norm, &m.hc_head_base, &m.hc_head_scale}) {
      b.total += floats_bytes(*v);
    }
  }
  return b;
}

DeviceModelWeights upload_weights(const model::ModelWeights& w, const model::ModelConfig& c,
                                  const UploadOptions& options) {
  const WeightBytes sizes = weight_bytes(w, c);
  DeviceModelWeights d;
  // Adopted matrices are not copied: the progress line would only count the small rest.
  Uploader up(d, sizes.total - (options.experts_on_host ? sizes.routed_experts : 0),
              options.progress && !options.adopt_device_matrices, options.adopt_device_matrices);
  d.token_embd = up.matrix(w.token_embd);
  d.output_hc_base = up.floats(w.output_hc_base);
  d.output_hc_scale = up.floats(w.output_hc_scale);
  d.output_norm = up.floats(w.output_norm);
  d.output_hc_fn = up.matrix(w.output_hc_fn);
  d.output = up.matrix(w.output);
  for (const model::BlockWeights& layer : w.layers) {
    d.layers.push_back(upload_block(up, layer, c, options.experts_on_host));
  }
  if (w.mtp) d.mtp = upload_mtp(up, *w.mtp, c);
  up.finish();  // nothing reads the weights before this: the caller gets them only now
  return d;
}

}  // namespace magnetar::gpu
