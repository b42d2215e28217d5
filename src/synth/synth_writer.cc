#include "synth/synth_writer.h"

#include <atomic>
#include <chrono>
#include <exception>
#include <mutex>
#include <thread>

#include "synth/weight_init.h"

namespace magnetar::synth {

using gguf::GgufValue;

uint64_t SynthPlan::tensor_bytes() const {
  uint64_t total = 0;
  for (const gguf::TensorSpec& s : specs) {
    int64_t rows = 1;
    for (size_t i = 1; i < s.ne.size(); ++i) rows *= s.ne[i];
    total += static_cast<uint64_t>(quant::row_bytes(s.type, s.ne[0]) * rows);
  }
  return total;
}

SynthPlan plan_synthetic_model(const SynthOptions& options, const TokenizerVocab& vocab) {
  const SynthPreset& p = options.preset;
  const model::ModelConfig& c = p.config;
  c.validate();
  if (vocab.tokens.size() != c.n_vocab) {
    throw model::ConfigError("the tokenizer has " + std::to_string(vocab.tokens.size()) +
                             " tokens but vocab_size is " + std::to_string(c.n_vocab));
  }
  if (p.with_mtp && c.n_mtp == 0) {
    throw model::ConfigError("an MTP block was requested but nextn_predict_layers is 0");
  }
  SynthPlan plan;
  gguf::GgufMetadata& m = plan.metadata;
  m.set("general.architecture", GgufValue::string(c.architecture));
  m.set("general.name", GgufValue::string("Magnetar synthetic " + p.name + " (random weights)"));
  m.set("general.quantization_version", GgufValue::u32(2));
  c.to_metadata(m);
  add_tokenizer_metadata(vocab, m);
  // Labels that make a synthetic file unmistakable (inspect and the chat banner show them).
  m.set("magnetar.synthetic", GgufValue::boolean(true));
  m.set("magnetar.synthetic.preset", GgufValue::string(p.name));
  m.set("magnetar.synthetic.quant_mix", GgufValue::string(std::string(quant_mix_name(p.mix))));
  m.set("magnetar.synthetic.encoding",
        GgufValue::string(p.encoding == Encoding::kExact ? "exact" : "random-codes"));
  m.set("magnetar.synthetic.seed", GgufValue::u64(options.seed));

  // Optional tensors (the unused router bias of hash layers) are left out, as in ds4's files.
  for (model::ExpectedTensor& t : model::model_tensors(c, p.with_mtp)) {
    if (t.optional) continue;
    plan.specs.push_back({t.name, storage_type(t.cls, p.mix, t.mtp), t.ne});
    plan.tensors.push_back(std::move(t));
  }
  return plan;
}

SynthResult write_synthetic_model(const SynthOptions& options, const SynthPlan& plan,
                                  const std::filesystem::path& path, const ProgressFn& progress) {
  auto start = std::chrono::steady_clock::now();
  gguf::GgufWriter writer(path, plan.metadata, plan.specs);

  std::vector<ChunkRequest> work;
  for (size_t i = 0; i < plan.tensors.size(); ++i) {
    const model::ExpectedTensor& t = plan.tensors[i];
    ChunkRequest base{&t,
                      plan.specs[i].type,
                      distribution_for(t, options.preset.config),
                      options.preset.encoding,
                      options.seed,
                      {}};
    for (const Chunk& chunk : split_into_chunks(i, t.ne)) {
      base.chunk = chunk;
      work.push_back(base);
    }
  }

  unsigned threads = options.threads ? options.threads : std::thread::hardware_concurrency();
  threads = std::max(1u, std::min<unsigned>(threads, static_cast<unsigned>(work.size())));
  std::atomic<size_t> next{0};
  std::atomic<uint64_t> bytes_done{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  std::mutex error_mutex;

  auto worker = [&] {
    std::vector<uint8_t> bytes;
    std::vector<float> scratch;
    try {
      for (size_t i; !failed && (i = next.fetch_add(1)) < work.size();) {
        const ChunkRequest& r = work[i];
        generate_chunk(r, bytes, scratch);
        uint64_t offset = static_cast<uint64_t>(r.chunk.first_row) *
                          static_cast<uint64_t>(quant::row_bytes(r.type, r.tensor->ne[0]));
        writer.write(r.chunk.tensor, offset, bytes);
        bytes_done += bytes.size();
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
      failed = true;
    }
  };
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t) pool.emplace_back(worker);
  const uint64_t total = plan.tensor_bytes();
  if (progress) {
    while (next.load() < work.size() && !failed) {
      progress(bytes_done.load(), total);
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
  }
  for (std::thread& t : pool) t.join();
  if (error) std::rethrow_exception(error);
  if (progress) progress(total, total);
  writer.commit();

  SynthResult result;
  result.file_bytes = writer.file_size();
  result.tensor_bytes = total;
  result.threads = threads;
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace magnetar::synth
