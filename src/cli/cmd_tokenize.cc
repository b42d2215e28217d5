// `magnetar tokenize` and `magnetar detokenize`: text ↔ token ids with a model's tokenizer.
//
//   magnetar tokenize -m MODEL (--text T | --file F) [--special]   → a JSON array of ids
//   magnetar detokenize -m MODEL (--ids 1,2,3 | --file F)          → the bytes the ids stand for
//
// tokenize treats control-token strings in the text as plain text unless --special is given, as
// the server does with client text. detokenize accepts what tokenize prints (ids separated by
// commas, white space or JSON brackets) and writes the text without adding a newline.
#include <fmt/format.h>

#include <cctype>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "cli/commands.h"
#include "gguf/gguf_reader.h"
#include "tokenizer/tokenizer.h"

namespace magnetar::cli {
namespace {

struct TokenizeOptions {
  std::string model;
  std::string text;
  std::string file;
  std::string ids;
  bool special = false;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Token ids separated by commas, white space or the brackets of a JSON array.
std::vector<int32_t> parse_ids(const std::string& text) {
  std::vector<int32_t> ids;
  std::string item;
  auto flush = [&] {
    if (item.empty()) return;
    size_t used = 0;
    long v = -1;
    try {
      v = std::stol(item, &used);
    } catch (const std::exception&) {
    }
    if (used != item.size() || v < 0 || v > INT32_MAX) {
      throw std::invalid_argument("'" + item + "' is not a token id");
    }
    ids.push_back(static_cast<int32_t>(v));
    item.clear();
  };
  for (char ch : text) {
    if (ch == ',' || ch == '[' || ch == ']' || std::isspace(static_cast<unsigned char>(ch))) {
      flush();
    } else {
      item += ch;
    }
  }
  flush();
  return ids;
}

// The model's tokenizer, or nullopt (after printing why) when its metadata is unusable.
std::optional<tokenizer::Tokenizer> load_tokenizer(const std::string& model,
                                                   const std::string& command) {
  const gguf::GgufFile file = gguf::GgufFile::open(model);
  try {
    return tokenizer::Tokenizer::from_gguf(file);
  } catch (const std::runtime_error& e) {
    fmt::print(stderr, "magnetar {}: {}: {}\n", command, model, e.what());
    return std::nullopt;
  }
}

int run_tokenize(const TokenizeOptions& o) {
  const std::string text = o.file.empty() ? o.text : read_file(o.file);
  const std::optional<tokenizer::Tokenizer> t = load_tokenizer(o.model, "tokenize");
  if (!t) return kExitInvalid;
  fmt::print("{}\n", nlohmann::json(t->encode(text, o.special)).dump());
  return kExitOk;
}

int run_detokenize(const TokenizeOptions& o) {
  std::vector<int32_t> ids;
  try {
    ids = parse_ids(o.file.empty() ? o.ids : read_file(o.file));
  } catch (const std::invalid_argument& e) {
    fmt::print(stderr, "magnetar detokenize: {}\n", e.what());
    return kExitError;
  }
  const std::optional<tokenizer::Tokenizer> t = load_tokenizer(o.model, "detokenize");
  if (!t) return kExitInvalid;
  for (int32_t id : ids) {
    if (id >= t->vocab_size()) {
      fmt::print(stderr, "magnetar detokenize: token id {} is outside the vocabulary of {}\n", id,
                 t->vocab_size());
      return kExitError;
    }
  }
  const std::string text = t->decode(ids);
  std::fwrite(text.data(), 1, text.size(), stdout);
  return kExitOk;
}

}  // namespace

Command add_tokenize_command(CLI::App& root) {
  auto o = std::make_shared<TokenizeOptions>();
  CLI::App* app = root.add_subcommand("tokenize", "Print the token ids of a text as a JSON array");
  app->add_option("-m,--model", o->model, "GGUF model (only its tokenizer metadata is read)")
      ->required();
  CLI::Option_group* input = app->add_option_group("input", "Exactly one of");
  input->add_option("--text", o->text, "The text");
  input->add_option("--file", o->file, "A file holding the text (bytes as is)");
  input->require_option(1);
  app->add_flag("--special", o->special,
                "Let control-token strings in the text (<｜User｜>, <think>, …) become control "
                "tokens; off, they are plain text");
  return {app, [o] { return run_tokenize(*o); }};
}

Command add_detokenize_command(CLI::App& root) {
  auto o = std::make_shared<TokenizeOptions>();
  CLI::App* app = root.add_subcommand("detokenize", "Print the text that token ids stand for");
  app->add_option("-m,--model", o->model, "GGUF model (only its tokenizer metadata is read)")
      ->required();
  CLI::Option_group* input = app->add_option_group("input", "Exactly one of");
  input->add_option("--ids", o->ids, "Token ids, e.g. 1,2,3 or [1, 2, 3]");
  input->add_option("--file", o->file, "A file of token ids");
  input->require_option(1);
  return {app, [o] { return run_detokenize(*o); }};
}

}  // namespace magnetar::cli
