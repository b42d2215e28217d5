// The library API front ends use: an Engine (one model on one backend) and its Sessions (one
// conversation's token sequence and model state each).
//
// A session stands for a token prefix. set_tokens() states the prefix the caller wants; the
// session keeps the part of its state that matches and marks the rest pending; Engine::step()
// then advances any number of sessions in one forward call (prefill of the pending tokens, or one
// decode token each). The model state cannot be rewound, so a prefix that diverges from, or is
// shorter than, what was processed is served from the newest checkpoint at or before the
// divergence (checkpoint() takes one), or rebuilt from the start.
//
// The model runs on a backend (backend/backend.h): the CPU reference, or CUDA when the build has
// it and a GPU is present.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "engine/session_codec.h"
#include "gguf/gguf_reader.h"
#include "tokenizer/tokenizer.h"

namespace magnetar::engine {

struct EngineOptions {
  std::filesystem::path model;
  // Instead of a model file: random weights made in GPU memory (backend/cuda/synthetic_weights.h)
  // for a preset, "flash", "pro" or "tiny" (model/model_presets.h), in the "q2" or "q4" types of
  // ds4's files (synthetic_types), drawn from synthetic_seed. Needs the CUDA backend.
  std::string synthetic;
  std::string synthetic_types = "q2";
  uint64_t synthetic_seed = 42;
  // "cpu", "cuda", or "auto": CUDA when this build has it and a GPU is present, else the CPU.
  std::string backend = "auto";
  bool official_numerics = true;  // the CPU backend's FP8/FP4 simulations (cpu::CpuOptions)
  unsigned threads = 0;           // CPU threads; 0: all
  // Prompt tokens per session and forward call while prefilling; 0: the backend's choice
  // (backend::Backend::preferred_prefill_chunk: 512 on the CPU, 2048 on CUDA).
  int64_t prefill_chunk = 0;
  // The most tokens a session may hold (prompt and generation); 0: the model's training context.
  // Backends size per-sequence state from it.
  int64_t context = 0;
  // CUDA: device memory the weights may take, in MiB; 0: the free memory less a reserve. Routed
  // experts beyond it stay in host memory behind a device-side expert cache.
  uint64_t gpu_mem_mib = 0;
};

// A prefix longer than the engine's context.
class ContextOverflow : public std::length_error {
 public:
  using std::length_error::length_error;
};

// The backend names this build can run, in the order "auto" tries them.
std::vector<std::string> available_backends();

// The backend an Engine with these options runs (options.model is not read: `file` is that model,
// and must outlive the backend), for tools that drive a backend directly, like `magnetar logits`.
// Throws std::invalid_argument for a backend this build or machine cannot run.
std::unique_ptr<backend::Backend> make_backend(const gguf::GgufFile& file,
                                               const EngineOptions& options);

// What a session's model state has processed. Copying it clones the backend's sequence, so a copy
// is a snapshot that later steps do not touch.
class SessionState {
 public:
  SessionState() = default;
  SessionState(const SessionState& other);
  SessionState& operator=(const SessionState& other);
  SessionState(SessionState&&) = default;
  SessionState& operator=(SessionState&&) = default;

  std::vector<int32_t> tokens;  // the tokens the state has processed
  std::vector<float> logits;    // the last token's logits (empty before any)
  std::unique_ptr<backend::Sequence> sequence;
};

class Session;

// Called during prefill with the tokens done so far and the total to do.
using ProgressFn = std::function<void(int64_t done, int64_t total)>;

class Engine {
 public:
  // Opens and validates the model. Throws gguf::GgufError or model::ConfigError.
  explicit Engine(const EngineOptions& options);
  ~Engine();

  const model::ModelConfig& config() const { return backend_->config(); }
  std::string_view backend_name() const { return backend_->name(); }
  int64_t context() const { return context_; }
  // The prefill chunk in use (EngineOptions::prefill_chunk, or the backend's choice).
  int64_t prefill_chunk() const { return prefill_chunk_; }
  // True for a model made by `magnetar synth` or with EngineOptions::synthetic (random weights:
  // its output is noise).
  bool synthetic() const { return synthetic_; }
  const tokenizer::Tokenizer& tokenizer() const { return *tokenizer_; }
  // SHA-256 of the model file's header (metadata and tensor directory; for synthetic weights, of
  // the header engine/synthetic_model.h makes): what session files are checked against.
  const ModelIdentity& identity() const { return identity_; }

  std::unique_ptr<Session> new_session();

  // Bytes of model state one sequence holds at the whole context (a fresh sequence with the
  // backend's storage reserved for context() positions: the device memory a sequence of that
  // length takes). Nullopt where the backend cannot reserve ahead (backend::Sequence::reserve).
  std::optional<size_t> full_context_state_bytes();

  // Processes the pending tokens of every session, in chunks of prefill_chunk, calling `progress`
  // between chunks; stops early (leaving the rest pending) when `cancel` becomes true. Afterwards
  // each fully processed session's logits are those of its last token.
  void step(std::span<Session* const> sessions, const ProgressFn& progress = nullptr,
            const std::atomic<bool>* cancel = nullptr);

 private:
  friend class Session;
  EngineOptions options_;
  std::vector<uint8_t> synthetic_header_;  // the image file_ parses for a synthetic model
  gguf::GgufFile file_;
  std::unique_ptr<backend::Backend> backend_;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer_;
  ModelIdentity identity_{};
  int64_t context_ = 0;
  int64_t prefill_chunk_ = 0;
  bool synthetic_ = false;
};

class Session {
 public:
  // Sets the prefix this session stands for; returns how many tokens are now pending. Throws
  // ContextOverflow (changing nothing) when the prefix is longer than the engine's context.
  int64_t set_tokens(std::span<const int32_t> tokens);
  // Adds one token to the prefix (the sampled token before the next decode step); throws
  // ContextOverflow when the context is full.
  void append(int32_t token);

  const std::vector<int32_t>& tokens() const { return tokens_; }
  int64_t processed() const { return static_cast<int64_t>(state_.tokens.size()); }
  int64_t pending() const { return static_cast<int64_t>(tokens_.size()) - processed(); }
  // Logits of the last processed token (empty before any).
  std::span<const float> logits() const { return state_.logits; }
  // Bytes of memory the model state holds (backend::Sequence::state_bytes).
  size_t state_bytes() const { return state_.sequence->state_bytes(); }

  // Remembers the current state so that a later shorter or diverging prefix can resume from it.
  void checkpoint() { checkpoints_.push_back(state_); }
  void clear_checkpoints() { checkpoints_.clear(); }
  // An in-memory copy of the state, and its restoration (which also sets tokens() to the
  // snapshot's tokens).
  SessionState snapshot() const { return state_; }
  void restore(SessionState state);
  // Forgets everything: an empty prefix, a fresh state, no checkpoints.
  void reset();

  // The state as bytes (session_codec.h) and back; load throws SessionError for a payload of
  // another model, a damaged or a truncated one, and leaves the session unchanged then.
  std::vector<uint8_t> save() const;
  void load(std::span<const uint8_t> bytes);

 private:
  friend class Engine;
  explicit Session(const Engine& engine);

  const Engine& engine_;
  std::vector<int32_t> tokens_;  // the prefix the caller wants
  SessionState state_;           // what the model state has processed
  std::vector<SessionState> checkpoints_;
};

}  // namespace magnetar::engine
