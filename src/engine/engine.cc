#include "engine/engine.h"

#include <algorithm>
#include <stdexcept>

#include "backend/cpu/cpu_backend.h"
#include "engine/synthetic_model.h"
#ifdef MAGNETAR_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

namespace magnetar::engine {

std::unique_ptr<backend::Backend> make_backend(const gguf::GgufFile& file, const EngineOptions& o) {
  std::string name = o.backend.empty() ? "auto" : o.backend;
  const std::vector<std::string> available = available_backends();
  if (name == "auto") {
    name = available.front();
  } else if (std::find(available.begin(), available.end(), name) == available.end()) {
    if (name == "cuda") {
      throw std::invalid_argument(
          "backend 'cuda' is not available: this build has no CUDA backend or no GPU is present");
    }
    throw std::invalid_argument("unknown backend '" + name + "' (expected cpu, cuda or auto)");
  }
  if (!o.synthetic.empty() && name != "cuda") {
    throw std::invalid_argument(
        name == o.backend
            ? "synthetic weights are made in GPU memory: they need the CUDA backend, not '" + name +
                  "'"
            : "synthetic weights are made in GPU memory: they need the CUDA backend, and this "
              "build has no CUDA backend or no GPU is present");
  }
#ifdef MAGNETAR_HAVE_CUDA
  if (name == "cuda") {
    gpu::CudaOptions cuda_options;
    cuda_options.context = o.context;  // 0: the model's; states grow only as sequences do
    cuda_options.official_numerics = o.official_numerics;
    cuda_options.gpu_mem = static_cast<size_t>(o.gpu_mem_mib) << 20;
    if (!o.synthetic.empty()) {
      const gpu::SyntheticSpec spec{*synth::quant_mix_from_name(o.synthetic_types),
                                    o.synthetic_seed};
      return gpu::make_synthetic_cuda_backend(model::ModelConfig::from_metadata(file.metadata()),
                                              spec, cuda_options);
    }
    return gpu::make_cuda_backend(file, cuda_options);
  }
#endif
  cpu::CpuOptions cpu_options;
  cpu_options.official_numerics = o.official_numerics;
  cpu_options.threads = o.threads;
  return std::make_unique<cpu::CpuBackend>(file, cpu_options);
}

namespace {

// The header image of a synthetic model, or nothing for a model file.
std::vector<uint8_t> synthetic_header(const EngineOptions& o) {
  if (o.synthetic.empty()) return {};
  if (!o.model.empty()) {
    throw std::invalid_argument("give a model file or synthetic weights, not both");
  }
  const std::optional<synth::QuantMix> mix = synth::quant_mix_from_name(o.synthetic_types);
  if (!mix || *mix == synth::QuantMix::kF32) {
    throw std::invalid_argument("synthetic weight types '" + o.synthetic_types +
                                "' (expected q2 or q4)");
  }
  return synthetic_model_header(o.synthetic, *mix, o.synthetic_seed);
}

gguf::GgufFile open_model(const EngineOptions& o, const std::vector<uint8_t>& synthetic_header) {
  if (o.synthetic.empty()) return gguf::GgufFile::open(o.model);
  return gguf::GgufFile::parse(synthetic_header, "synthetic " + o.synthetic + " weights");
}

}  // namespace

std::vector<std::string> available_backends() {
  std::vector<std::string> names;
#ifdef MAGNETAR_HAVE_CUDA
  if (gpu::cuda_backend_usable()) names.push_back("cuda");
#endif
  names.push_back("cpu");
  return names;
}

SessionState::SessionState(const SessionState& other)
    : tokens(other.tokens),
      logits(other.logits),
      sequence(other.sequence ? other.sequence->clone() : nullptr) {}

SessionState& SessionState::operator=(const SessionState& other) {
  if (this != &other) *this = SessionState(other);
  return *this;
}

Engine::Engine(const EngineOptions& options)
    : options_(options),
      synthetic_header_(synthetic_header(options)),
      file_(open_model(options, synthetic_header_)) {
  if (options.context < 0) throw std::invalid_argument("context must not be negative");
  backend_ = make_backend(file_, options);
  context_ = options.context > 0 ? options.context : backend_->config().n_ctx_train;
  if (options.prefill_chunk < 0) throw std::invalid_argument("prefill_chunk must not be negative");
  prefill_chunk_ =
      options.prefill_chunk > 0 ? options.prefill_chunk : backend_->preferred_prefill_chunk();
  tokenizer_ = std::make_unique<tokenizer::Tokenizer>(tokenizer::Tokenizer::from_gguf(file_));
  identity_ = sha256(file_.bytes().first(file_.data_offset()));
  const gguf::GgufValue* synthetic = file_.metadata().find("magnetar.synthetic");
  synthetic_ = synthetic != nullptr && synthetic->as_bool().value_or(false);
}

Engine::~Engine() = default;

std::unique_ptr<Session> Engine::new_session() {
  return std::unique_ptr<Session>(new Session(*this));
}

std::optional<size_t> Engine::full_context_state_bytes() {
  const std::unique_ptr<backend::Sequence> sequence = backend_->new_sequence();
  if (!sequence->reserve(context_)) return std::nullopt;
  return sequence->state_bytes();
}

void Engine::step(std::span<Session* const> sessions, const ProgressFn& progress,
                  const std::atomic<bool>* cancel) {
  int64_t total = 0, done = 0;
  for (Session* s : sessions) total += std::max<int64_t>(0, s->pending());
  const int64_t chunk = prefill_chunk_;
  for (;;) {
    if (cancel != nullptr && cancel->load()) return;
    std::vector<backend::ForwardItem> items;
    std::vector<Session*> owners;
    for (Session* s : sessions) {
      if (s->pending() <= 0) continue;
      backend::ForwardItem item;
      item.sequence = s->state_.sequence.get();
      item.tokens = std::span<const int32_t>(s->tokens_)
                        .subspan(s->processed(), std::min(chunk, s->pending()));
      items.push_back(item);
      owners.push_back(s);
    }
    if (items.empty()) return;
    backend_->forward(items);
    for (size_t i = 0; i < items.size(); ++i) {
      SessionState& d = owners[i]->state_;
      d.tokens.insert(d.tokens.end(), items[i].tokens.begin(), items[i].tokens.end());
      d.logits = std::move(items[i].logits);
      done += static_cast<int64_t>(items[i].tokens.size());
    }
    if (progress) progress(done, total);
  }
}

Session::Session(const Engine& engine) : engine_(engine) { reset(); }

void Session::reset() {
  tokens_.clear();
  checkpoints_.clear();
  state_ = SessionState{};
  state_.sequence = engine_.backend_->new_sequence();
}

namespace {

[[noreturn]] void overflow(size_t tokens, int64_t context) {
  throw ContextOverflow(std::to_string(tokens) + " tokens do not fit the context of " +
                        std::to_string(context) + " tokens");
}

}  // namespace

void Session::append(int32_t token) {
  if (static_cast<int64_t>(tokens_.size()) >= engine_.context()) {
    overflow(tokens_.size() + 1, engine_.context());
  }
  tokens_.push_back(token);
}

int64_t Session::set_tokens(std::span<const int32_t> tokens) {
  if (static_cast<int64_t>(tokens.size()) > engine_.context()) {
    overflow(tokens.size(), engine_.context());
  }
  tokens_.assign(tokens.begin(), tokens.end());
  auto matches = [&](const SessionState& d) {
    return d.tokens.size() <= tokens_.size() &&
           std::equal(d.tokens.begin(), d.tokens.end(), tokens_.begin());
  };
  if (!matches(state_)) {
    // The state went past the divergence: take the longest checkpoint that is still a prefix.
    const SessionState* best = nullptr;
    for (const SessionState& c : checkpoints_) {
      if (matches(c) && (best == nullptr || c.tokens.size() > best->tokens.size())) best = &c;
    }
    if (best != nullptr) {
      state_ = *best;
    } else {
      state_ = SessionState{};
      state_.sequence = engine_.backend_->new_sequence();
    }
  }
  return pending();
}

void Session::restore(SessionState state) {
  state_ = std::move(state);
  tokens_ = state_.tokens;
}

std::vector<uint8_t> Session::save() const {
  SessionData data{state_.tokens, state_.logits, state_.sequence->export_state()};
  return encode_session(engine_.identity(), data);
}

void Session::load(std::span<const uint8_t> bytes) {
  SessionData data = decode_session(engine_.identity(), bytes);
  if (static_cast<int64_t>(data.tokens.size()) > engine_.context()) {
    throw SessionError("the session holds " + std::to_string(data.tokens.size()) +
                       " tokens, more than the context of " + std::to_string(engine_.context()));
  }
  SessionState loaded;
  try {
    loaded.sequence = engine_.backend_->import_state(data.state);
  } catch (const std::invalid_argument& e) {
    throw SessionError(std::string("session payload: ") + e.what());
  }
  if (!data.logits.empty() && data.logits.size() != engine_.config().n_vocab) {
    throw SessionError("session payload: logits do not match the vocabulary");
  }
  loaded.tokens = std::move(data.tokens);
  loaded.logits = std::move(data.logits);
  restore(std::move(loaded));
  checkpoints_.clear();
}

}  // namespace magnetar::engine
