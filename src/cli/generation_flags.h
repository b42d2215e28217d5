// What `magnetar run` and `magnetar chat` share: the model and sampling flags, opening the engine,
// and showing a generation on a terminal or a pipe.
//
// Presentation: answers go to stdout. Reasoning is shown dim on a terminal and between <think>
// and </think> markers when stdout is not one, so a pipe still tells them apart. Prefill progress
// (a live bar, on a terminal only) and the tokens/s line go to stderr, keeping stdout clean.
#pragma once

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include "engine/conversation.h"
#include "engine/engine.h"

namespace magnetar::cli {

struct GenerationFlags {
  std::string model;
  std::string backend = "auto";
  int64_t context = 32768;
  uint64_t gpu_mem_mib = 0;
  unsigned threads = 0;
  std::string system;
  int64_t max_tokens = 50000;
  float temperature = 1.0f;
  int top_k = 0;
  float top_p = 1.0f;
  float min_p = 0.05f;
  uint64_t seed = 0;  // 0: a fresh seed per run
  bool think = false, think_max = false, nothink = false;
};

// Registers the flags on a subcommand.
void add_generation_flags(CLI::App& app, GenerationFlags& flags);

// Opens the model; says on stderr when its weights are random (a `magnetar synth` model).
// --gpu-mem MIB (engine::EngineOptions::gpu_mem_mib), for every command that opens an engine.
void add_gpu_mem_flag(CLI::App& app, uint64_t& mib);

std::unique_ptr<engine::Engine> open_engine(const GenerationFlags& flags, int64_t context);
engine::TurnOptions turn_options(const GenerationFlags& flags);
// Applies --think / --think-max / --nothink (thinking at high effort when none is given).
void apply_thinking_flags(const GenerationFlags& flags, engine::Conversation& conversation);
// Think-Max asks for a long context (DeepSeek advises at least 384K tokens); say so once.
void warn_if_think_max_context_is_short(const engine::Conversation& conversation);

// Ctrl+C: the handler only sets a flag (the turn loop and the REPL read it). It is installed
// without SA_RESTART, so that Ctrl+C also interrupts a blocking read at the REPL prompt.
void install_interrupt_handler();
std::atomic<bool>& interrupted();

// Writes one turn's text as it streams.
class TextPrinter {
 public:
  explicit TextPrinter(std::FILE* out);
  void write(std::string_view text, bool reasoning);
  // Closes an open reasoning span and ends the line.
  void finish();

 private:
  std::FILE* out_;
  bool terminal_;
  bool in_reasoning_ = false;
  bool at_line_start_ = true;
};

// A live prefill bar on stderr when it is a terminal; erased when done.
class ProgressBar {
 public:
  ProgressBar();
  void update(int64_t done, int64_t total);
  void clear();

 private:
  bool terminal_;
  bool drawn_ = false;
  double start_;
};

// "prefill: 1,234 tokens at 812.3 tok/s, decode: 64 tokens at 30.1 tok/s (eos)" on stderr.
void print_turn_stats(const engine::TurnStats& stats);

}  // namespace magnetar::cli
