// Encode throughput of the tokenizer on a mixed corpus.
//
//   magnetar_tokenizer_bench [--model M.gguf] [--corpus DIR] [--megabytes N]
//
// Without --model, the tokenizer is built from data/deepseek-v4-tokenizer (the same metadata
// `magnetar synth` writes). The corpus is every *.txt in DIR (default tests/tokenizer/corpus:
// code, prose in many scripts, emoji, whitespace and digit runs), repeated to N MB (default 16).
// Prints MB/s and tokens/s for one thread, with special tokens off and on, and decode MB/s.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gguf/gguf_reader.h"
#include "gguf/gguf_writer.h"
#include "synth/tokenizer_vocab.h"
#include "tokenizer/tokenizer.h"

namespace {

namespace fs = std::filesystem;
using magnetar::tokenizer::Tokenizer;

std::string read_corpus(const fs::path& dir, size_t target_bytes) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ".txt") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  std::string one;
  for (const fs::path& f : files) {
    std::ifstream in(f, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    one += s.str();
  }
  if (one.empty()) throw std::runtime_error("no *.txt corpus files in " + dir.string());
  std::string corpus;
  while (corpus.size() < target_bytes) corpus += one;
  return corpus;
}

template <typename F>
double seconds(F&& f) {
  const auto start = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  fs::path model;
  fs::path corpus_dir = fs::path(MAGNETAR_SOURCE_DIR) / "tests/tokenizer/corpus";
  size_t megabytes = 16;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--model") {
      model = argv[i + 1];
    } else if (flag == "--corpus") {
      corpus_dir = argv[i + 1];
    } else if (flag == "--megabytes") {
      megabytes = std::stoul(argv[i + 1]);
    } else {
      fmt::print(stderr, "unknown option {}\n", flag);
      return 2;
    }
  }
  // A GGUF image holding only the tokenizer metadata stands in for a model file.
  std::vector<uint8_t> image;
  std::optional<magnetar::gguf::GgufFile> file;
  if (model.empty()) {
    const magnetar::synth::TokenizerVocab vocab =
        magnetar::synth::load_deepseek_v4_vocab(magnetar::synth::find_tokenizer_dir());
    magnetar::gguf::GgufMetadata m;
    m.set("tokenizer.ggml.tokens", magnetar::gguf::GgufValue::string_array(vocab.tokens));
    m.set("tokenizer.ggml.merges", magnetar::gguf::GgufValue::string_array(vocab.merges));
    m.set("tokenizer.ggml.token_type", magnetar::gguf::GgufValue::i32_array(vocab.token_types));
    m.set("tokenizer.ggml.bos_token_id", magnetar::gguf::GgufValue::u32(vocab.bos_id));
    m.set("tokenizer.ggml.eos_token_id", magnetar::gguf::GgufValue::u32(vocab.eos_id));
    image = magnetar::gguf::encode_header(m, {}).bytes;
    file.emplace(magnetar::gguf::GgufFile::parse(image, "tokenizer metadata"));
  } else {
    file.emplace(magnetar::gguf::GgufFile::open(model));
  }
  Tokenizer tokenizer = Tokenizer::from_gguf(*file);
  const std::string corpus = read_corpus(corpus_dir, megabytes << 20);
  const double mb = static_cast<double>(corpus.size()) / 1e6;

  std::vector<int32_t> ids;
  tokenizer.encode(corpus.substr(0, 1 << 20));  // warm-up: page in tables and code
  for (bool special : {false, true}) {
    const double s = seconds([&] { ids = tokenizer.encode(corpus, special); });
    fmt::print(
        "encode (special {:3}): {:.1f} MB in {:.3f} s = {:.2f} MB/s, {:.2f} M tokens/s, "
        "{:.2f} bytes/token\n",
        special ? "on" : "off", mb, s, mb / s, static_cast<double>(ids.size()) / s / 1e6,
        static_cast<double>(corpus.size()) / static_cast<double>(ids.size()));
  }
  std::string text;
  const double s = seconds([&] { text = tokenizer.decode(ids); });
  fmt::print("decode: {:.2f} MB/s; round trip {}\n", mb / s, text == corpus ? "exact" : "DIFFERS");
  return text == corpus ? 0 : 1;
}
