#include "engine/engine.h"

#include <algorithm>

namespace magnetar::engine {

Engine::Engine(const EngineOptions& options)
    : options_(options), file_(gguf::GgufFile::open(options.model)) {
  cpu::CpuOptions cpu_options;
  cpu_options.official_numerics = options.official_numerics;
  cpu_options.threads = options.threads;
  model_ = std::make_unique<cpu::CpuModel>(file_, cpu_options);
  tokenizer_ = std::make_unique<tokenizer::Tokenizer>(tokenizer::Tokenizer::from_gguf(file_));
  identity_ = sha256(file_.bytes().first(file_.data_offset()));
}

Engine::~Engine() = default;

std::unique_ptr<Session> Engine::new_session() {
  return std::unique_ptr<Session>(new Session(*this));
}

void Engine::step(std::span<Session* const> sessions, const ProgressFn& progress,
                  const std::atomic<bool>* cancel) {
  int64_t total = 0, done = 0;
  for (Session* s : sessions) total += std::max<int64_t>(0, s->pending());
  const int64_t chunk = std::max<int64_t>(1, options_.prefill_chunk);
  for (;;) {
    if (cancel != nullptr && cancel->load()) return;
    std::vector<cpu::ForwardItem> items;
    std::vector<Session*> owners;
    for (Session* s : sessions) {
      if (s->pending() <= 0) continue;
      cpu::ForwardItem item;
      item.state = &s->data_.state;
      item.tokens = std::span<const int32_t>(s->tokens_)
                        .subspan(s->processed(), std::min(chunk, s->pending()));
      items.push_back(item);
      owners.push_back(s);
    }
    if (items.empty()) return;
    model_->forward(items);
    for (size_t i = 0; i < items.size(); ++i) {
      SessionData& d = owners[i]->data_;
      d.tokens.insert(d.tokens.end(), items[i].tokens.begin(), items[i].tokens.end());
      d.logits = std::move(items[i].logits);
      done += static_cast<int64_t>(items[i].tokens.size());
    }
    if (progress) progress(done, total);
  }
}

Session::Session(const Engine& engine) : engine_(engine) {
  data_.state = cpu::make_sequence_state(engine.config(), /*with_mtp=*/false);
}

int64_t Session::set_tokens(std::span<const int32_t> tokens) {
  tokens_.assign(tokens.begin(), tokens.end());
  auto matches = [&](const SessionData& d) {
    return d.tokens.size() <= tokens_.size() &&
           std::equal(d.tokens.begin(), d.tokens.end(), tokens_.begin());
  };
  if (!matches(data_)) {
    // The state went past the divergence: take the longest checkpoint that is still a prefix.
    const SessionData* best = nullptr;
    for (const SessionData& c : checkpoints_) {
      if (matches(c) && (best == nullptr || c.tokens.size() > best->tokens.size())) best = &c;
    }
    if (best != nullptr) {
      data_ = *best;
    } else {
      data_ = SessionData{};
      data_.state = cpu::make_sequence_state(engine_.config(), false);
    }
  }
  return pending();
}

void Session::restore(SessionData data) {
  data_ = std::move(data);
  tokens_ = data_.tokens;
}

std::vector<uint8_t> Session::save() const { return encode_session(engine_.identity(), data_); }

void Session::load(std::span<const uint8_t> bytes) {
  restore(decode_session(engine_.identity(), bytes));
}

}  // namespace magnetar::engine
