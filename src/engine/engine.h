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
// Today the backend is the CPU reference (backend/cpu); the CUDA backend plugs in here.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "backend/cpu/cpu_model.h"
#include "engine/session_codec.h"
#include "gguf/gguf_reader.h"
#include "tokenizer/tokenizer.h"

namespace magnetar::engine {

struct EngineOptions {
  std::filesystem::path model;
  bool official_numerics = true;
  unsigned threads = 0;
  int64_t prefill_chunk = 512;  // tokens per forward call while prefilling
};

class Session;

// Called during prefill with the tokens done so far and the total to do.
using ProgressFn = std::function<void(int64_t done, int64_t total)>;

class Engine {
 public:
  // Opens and validates the model. Throws gguf::GgufError or model::ConfigError.
  explicit Engine(const EngineOptions& options);
  ~Engine();

  const model::ModelConfig& config() const { return model_->config(); }
  const tokenizer::Tokenizer& tokenizer() const { return *tokenizer_; }
  // SHA-256 of the model file's header (metadata and tensor directory): what session files are
  // checked against.
  const ModelIdentity& identity() const { return identity_; }

  std::unique_ptr<Session> new_session();

  // Processes the pending tokens of every session, in chunks of prefill_chunk, calling `progress`
  // between chunks; stops early (leaving the rest pending) when `cancel` becomes true. Afterwards
  // each fully processed session's logits are those of its last token.
  void step(std::span<Session* const> sessions, const ProgressFn& progress = nullptr,
            const std::atomic<bool>* cancel = nullptr);

 private:
  EngineOptions options_;
  gguf::GgufFile file_;
  std::unique_ptr<cpu::CpuModel> model_;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer_;
  ModelIdentity identity_{};
};

class Session {
 public:
  // Sets the prefix this session stands for; returns how many tokens are now pending.
  int64_t set_tokens(std::span<const int32_t> tokens);
  void append(int32_t token) { tokens_.push_back(token); }

  const std::vector<int32_t>& tokens() const { return tokens_; }
  int64_t processed() const { return static_cast<int64_t>(data_.tokens.size()); }
  int64_t pending() const { return static_cast<int64_t>(tokens_.size()) - processed(); }
  // Logits of the last processed token (empty before any).
  std::span<const float> logits() const { return data_.logits; }

  // Remembers the current state so that a later shorter or diverging prefix can resume from it.
  void checkpoint() { checkpoints_.push_back(data_); }
  // An in-memory copy of the state, and its restoration.
  SessionData snapshot() const { return data_; }
  void restore(SessionData data);

  // The state as bytes (session_codec.h) and back; load throws SessionError for a payload of
  // another model, a damaged or a truncated one, and leaves the session unchanged then.
  std::vector<uint8_t> save() const;
  void load(std::span<const uint8_t> bytes);

 private:
  friend class Engine;
  explicit Session(const Engine& engine);

  const Engine& engine_;
  std::vector<int32_t> tokens_;  // the prefix the caller wants
  SessionData data_;             // what the model state has processed
  std::vector<SessionData> checkpoints_;
};

}  // namespace magnetar::engine
