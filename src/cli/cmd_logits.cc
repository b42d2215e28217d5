// `magnetar logits`: run a token sequence through the model and save the logits as .npy, for
// oracle tests and debugging.
#include <fmt/format.h>

#include <chrono>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>

#include "cli/commands.h"
#include "cli/npy_writer.h"
#include "engine/engine.h"

namespace magnetar::cli {
namespace {

struct LogitsOptions {
  std::string model;
  std::string tokens;
  std::string tokens_file;
  std::string output;
  std::string backend = "cpu";
  std::string numerics = "official";
  int64_t chunk = 0;
  unsigned threads = 0;
  bool all_positions = false;
  bool mtp = false;
};

// Token ids separated by commas and/or whitespace.
std::vector<int32_t> parse_tokens(const std::string& text, const std::string& where) {
  std::vector<int32_t> ids;
  std::string item;
  std::istringstream in(text);
  auto flush = [&] {
    if (item.empty()) return;
    try {
      size_t used = 0;
      long v = std::stol(item, &used);
      if (used != item.size() || v < 0 || v > INT32_MAX) throw std::invalid_argument(item);
      ids.push_back(static_cast<int32_t>(v));
    } catch (const std::exception&) {
      throw std::invalid_argument(where + ": '" + item + "' is not a token id");
    }
    item.clear();
  };
  for (char ch; in.get(ch);) {
    if (ch == ',' || std::isspace(static_cast<unsigned char>(ch))) {
      flush();
    } else {
      item += ch;
    }
  }
  flush();
  return ids;
}

int run_logits(const LogitsOptions& o) {
  std::vector<int32_t> tokens;
  if (!o.tokens_file.empty()) {
    std::ifstream in(o.tokens_file);
    if (!in) throw std::invalid_argument(o.tokens_file + ": cannot read");
    std::stringstream text;
    text << in.rdbuf();
    tokens = parse_tokens(text.str(), o.tokens_file);
  } else {
    tokens = parse_tokens(o.tokens, "--tokens");
  }
  if (tokens.empty()) throw std::invalid_argument("no tokens given (--tokens or --tokens-file)");
  gguf::GgufFile file = gguf::GgufFile::open(o.model);
  engine::EngineOptions options;
  options.backend = o.backend;
  options.official_numerics = o.numerics == "official";
  options.threads = o.threads;
  options.context = static_cast<int64_t>(tokens.size());
  std::unique_ptr<backend::Backend> model = engine::make_backend(file, options);
  if (o.mtp && !model->has_mtp()) {
    throw std::invalid_argument(o.model + " has no MTP block (mtp.0.* tensors)");
  }
  const int64_t T = static_cast<int64_t>(tokens.size()), V = model->config().n_vocab;
  const int64_t chunk = o.chunk > 0 ? o.chunk : T;
  std::unique_ptr<backend::Sequence> sequence =
      o.mtp ? model->new_mtp_sequence() : model->new_sequence();

  std::vector<float> logits;
  std::map<int64_t, std::vector<float>> mtp_rows;  // later calls replace earlier drafts
  auto start = std::chrono::steady_clock::now();
  for (int64_t begin = 0; begin < T; begin += chunk) {
    const int64_t n = std::min(chunk, T - begin);
    backend::ForwardItem item;
    item.sequence = sequence.get();
    item.tokens = std::span<const int32_t>(tokens).subspan(begin, n);
    item.all_logits = o.all_positions;
    item.mtp_logits = o.mtp;
    model->forward(std::span(&item, 1));
    if (o.all_positions || begin + n == T) {
      if (!o.all_positions) logits.clear();
      logits.insert(logits.end(), item.logits.begin(), item.logits.end());
    }
    for (size_t r = 0; r * V < item.mtp.size(); ++r) {
      mtp_rows[item.mtp_first_position + static_cast<int64_t>(r)].assign(
          item.mtp.begin() + r * V, item.mtp.begin() + (r + 1) * V);
    }
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const int64_t rows = o.all_positions ? T : 1;
  std::vector<int64_t> shape = {rows, V};
  if (o.mtp) {
    for (int64_t p = T - rows; p < T; ++p) {
      logits.insert(logits.end(), mtp_rows.at(p).begin(), mtp_rows.at(p).end());
    }
    shape.insert(shape.begin(), 2);
  }
  write_npy(o.output, logits, shape);
  const cpu::ForwardCounters k = sequence->export_state().counters;
  int64_t rows_emitted = 0;
  for (int64_t r : k.rows_emitted) rows_emitted += r;
  fmt::print(stderr,
             "{} tokens in {:.2f} s ({:.1f} tokens/s, {} backend, {} numerics, chunk {}): window "
             "wraps {}, compressed rows {}, partial indexer selections {}\n",
             T, seconds, static_cast<double>(T) / seconds, model->name(), o.numerics, chunk,
             k.window_wraps, rows_emitted, k.indexer_partial_selections);
  return kExitOk;
}

}  // namespace

Command add_logits_command(CLI::App& root) {
  auto o = std::make_shared<LogitsOptions>();
  CLI::App* app = root.add_subcommand("logits", "Run tokens through the model, save logits (.npy)");
  app->add_option("-m,--model", o->model, "GGUF model")->required();
  app->add_option("--tokens", o->tokens, "Token ids, comma separated");
  app->add_option("--tokens-file", o->tokens_file, "File of token ids (comma or space separated)");
  app->add_option("-o,--output", o->output,
                  "Output .npy: [positions, vocab] float32, or "
                  "[2, positions, vocab] with --mtp (main, MTP draft)")
      ->required();
  app->add_option("--chunk", o->chunk, "Prefill chunk size (default: the whole sequence)");
  app->add_flag("--all-positions", o->all_positions, "Logits of every position, not the last");
  app->add_flag("--mtp", o->mtp,
                "Also the MTP draft logits: position i uses its final state and token i+1 (the "
                "last position: the argmax of its logits)");
  app->add_option("--backend", o->backend, "cpu, cuda or auto")
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}))
      ->capture_default_str();
  app->add_option("--numerics", o->numerics,
                  "official: keep the FP8/FP4 simulations of the official model; plain: skip them")
      ->check(CLI::IsMember({"official", "plain"}))
      ->capture_default_str();
  app->add_option("--threads", o->threads, "CPU threads (default: all)");
  return {app, [o] { return run_logits(*o); }};
}

}  // namespace magnetar::cli
