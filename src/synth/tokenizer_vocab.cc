#include "synth/tokenizer_vocab.h"

#include <fmt/format.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <utility>

#include "model/special_tokens.h"

namespace magnetar::synth {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kTokenizerFile = "tokenizer.json";
constexpr std::string_view kOverlayFile = "v4_added_tokens.json";
constexpr std::string_view kConfigFile = "tokenizer_config.json";
constexpr std::string_view kTokenizerDirName = "deepseek-v4-tokenizer";

[[noreturn]] void fail(const fs::path& file, std::string_view what) {
  throw std::runtime_error(fmt::format("{}: {}", file.string(), what));
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, fmt::format("cannot open: {}", std::strerror(errno)));
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0) fail(path, "cannot determine the file size");
  std::string bytes(static_cast<size_t>(size), '\0');
  in.seekg(0);
  in.read(bytes.data(), size);
  if (!in) fail(path, "read error");
  return bytes;
}

nlohmann::json parse_json_file(const fs::path& path) {
  const std::string text = read_file(path);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& error) {
    fail(path, fmt::format("malformed JSON: {}", error.what()));
  }
}

// The token of each id as the files define it, before holes are checked and types assigned. An id
// may be defined more than once (Hugging Face files restate ids 0-2 in model.vocab and
// added_tokens; the overlay restates 128799) as long as every definition names the same string.
class VocabBuilder {
 public:
  explicit VocabBuilder(uint32_t vocab_size) : entries_(vocab_size) {}

  // `added` marks an added token (tokenizer.json added_tokens or the overlay) as opposed to a BPE
  // vocabulary entry; `where` locates the definition inside `file` for messages.
  void define(const fs::path& file, std::string_view where, std::string token, uint64_t id,
              bool added, bool special) {
    if (id >= entries_.size()) {
      fail(file, fmt::format("{}: id {} of '{}' is not below vocab_size {}", where, id, token,
                             entries_.size()));
    }
    Entry& entry = entries_[id];
    if (entry.source == nullptr) {
      entry.token = std::move(token);
      entry.source = &file;
    } else if (entry.token != token) {
      fail(file, fmt::format("{}: id {} is given to '{}' but {} already gives it '{}'", where, id,
                             token, entry.source->filename().string(), entry.token));
    } else if (added && entry.added && entry.special != special) {
      fail(file, fmt::format("{}: id {} '{}' has special={} but {} says special={}", where, id,
                             token, special, entry.source->filename().string(), entry.special));
    }
    if (added) {
      entry.added = true;
      entry.special = special;
    }
  }

  // Moves the tokens into `vocab` with their types. Ids above the largest defined one become
  // "[PAD<id>]" (unused), the names the GGUF converter gives ids the tokenizer does not define.
  void finish(const fs::path& dir, TokenizerVocab& vocab) && {
    size_t end = entries_.size();
    while (end > 0 && entries_[end - 1].source == nullptr) --end;
    vocab.tokens.reserve(entries_.size());
    vocab.token_types.reserve(entries_.size());
    for (size_t id = 0; id < entries_.size(); ++id) {
      Entry& entry = entries_[id];
      if (entry.source == nullptr) {
        if (id < end) {
          fail(dir,
               fmt::format("no token for id {}, below the largest defined id {}: neither {} nor "
                           "{} defines it",
                           id, end - 1, kTokenizerFile, kOverlayFile));
        }
        vocab.tokens.push_back(fmt::format("[PAD{}]", id));
        vocab.token_types.push_back(kTokenTypeUnused);
        continue;
      }
      vocab.token_types.push_back(type_of(entry));
      vocab.tokens.push_back(std::move(entry.token));
    }
  }

 private:
  struct Entry {
    std::string token;
    const fs::path* source = nullptr;  // the file that defined it first; null: undefined
    bool added = false;
    bool special = false;
  };

  // Hugging Face to GGUF conversion types an added token as control when it is flagged special or
  // looks like one (DeepSeek leaves most of its <｜…｜> markers unflagged), as user-defined
  // otherwise, and every BPE entry as normal.
  static int32_t type_of(const Entry& entry) {
    if (!entry.added) return kTokenTypeNormal;
    const std::string_view token = entry.token;
    const bool control_shaped = (token.starts_with("<｜") && token.ends_with("｜>")) ||
                                (token.starts_with("<|") && token.ends_with("|>"));
    return entry.special || control_shaped ? kTokenTypeControl : kTokenTypeUserDefined;
  }

  std::vector<Entry> entries_;
};

// What a JSON value in tokenizer.json is to the loader.
enum class Slot : uint8_t {
  kRoot,
  kModel,
  kVocab,       // model.vocab: {token: id}
  kVocabEntry,  // one id of model.vocab
  kMerges,      // model.merges
  kMerge,       // one merge: "left right" or [left, right]
  kMergePart,   // left or right of a [left, right] merge
  kAddedTokens,
  kAddedToken,
  kAddedId,
  kAddedContent,
  kAddedSpecial,
  kIgnored,  // anything else (normalizer, pre_tokenizer, decoder, ...)
};

enum class Kind : uint8_t { kObject, kArray, kString, kUnsigned, kBool, kOther };

bool accepts(Slot slot, Kind kind) {
  switch (slot) {
    case Slot::kRoot:
    case Slot::kModel:
    case Slot::kVocab:
    case Slot::kAddedToken:
      return kind == Kind::kObject;
    case Slot::kMerges:
    case Slot::kAddedTokens:
      return kind == Kind::kArray;
    case Slot::kVocabEntry:
    case Slot::kAddedId:
      return kind == Kind::kUnsigned;
    case Slot::kMerge:
      return kind == Kind::kString || kind == Kind::kArray;
    case Slot::kMergePart:
    case Slot::kAddedContent:
      return kind == Kind::kString;
    case Slot::kAddedSpecial:
      return kind == Kind::kBool;
    case Slot::kIgnored:
      return true;
  }
  return false;
}

std::string_view expected(Slot slot) {
  switch (slot) {
    case Slot::kRoot:
    case Slot::kModel:
    case Slot::kVocab:
    case Slot::kAddedToken:
      return "an object";
    case Slot::kMerges:
    case Slot::kAddedTokens:
      return "an array";
    case Slot::kVocabEntry:
    case Slot::kAddedId:
      return "a non-negative integer";
    case Slot::kMerge:
      return "a \"left right\" string or a [left, right] pair";
    case Slot::kMergePart:
    case Slot::kAddedContent:
      return "a string";
    case Slot::kAddedSpecial:
      return "true or false";
    case Slot::kIgnored:
      break;
  }
  return "anything";
}

// Streams tokenizer.json through nlohmann's SAX interface and keeps only model.vocab,
// model.merges and added_tokens. Building the whole document (a 128,000-member object among it)
// costs about 2.5 times as much as this.
class TokenizerJsonReader final : public nlohmann::json_sax<nlohmann::json> {
 public:
  TokenizerJsonReader(const fs::path& file, VocabBuilder& builder, std::vector<std::string>& merges)
      : file_(file), builder_(builder), merges_(merges) {}

  bool null() override {
    begin_value(Kind::kOther);
    return true;
  }
  bool boolean(bool value) override {
    if (begin_value(Kind::kBool) == Slot::kAddedSpecial) added_.special = value;
    return true;
  }
  bool number_integer(number_integer_t) override {
    begin_value(Kind::kOther);
    return true;
  }
  bool number_unsigned(number_unsigned_t value) override {
    switch (begin_value(Kind::kUnsigned)) {
      case Slot::kVocabEntry:
        builder_.define(file_, "model.vocab", std::move(frames_.back().key), value,
                        /*added=*/false, /*special=*/false);
        break;
      case Slot::kAddedId:
        added_.id = value;
        break;
      default:
        break;
    }
    return true;
  }
  bool number_float(number_float_t, const string_t&) override {
    begin_value(Kind::kOther);
    return true;
  }
  bool string(string_t& value) override {
    switch (begin_value(Kind::kString)) {
      case Slot::kMerge:
        add_merge(std::move(value), frames_.size());
        break;
      case Slot::kMergePart:
        pair_.push_back(std::move(value));
        break;
      case Slot::kAddedContent:
        added_.content = std::move(value);
        break;
      default:
        break;
    }
    return true;
  }
  bool binary(binary_t&) override {
    begin_value(Kind::kOther);
    return true;
  }
  bool start_object(std::size_t) override {
    open(Kind::kObject);
    return true;
  }
  bool start_array(std::size_t) override {
    open(Kind::kArray);
    return true;
  }
  bool key(string_t& key) override {
    frames_.back().key = std::move(key);
    return true;
  }
  bool end_object() override {
    close();
    return true;
  }
  bool end_array() override {
    close();
    return true;
  }
  bool parse_error(std::size_t position, const std::string&,
                   const nlohmann::detail::exception& error) override {
    fail(file_, fmt::format("malformed JSON at byte {}: {}", position, error.what()));
  }

  // Checks, after the parse, that the parts the GGUF needs were there.
  void finish() const {
    if (!seen_vocab_) fail(file_, "model.vocab is missing");
    if (!seen_merges_) fail(file_, "model.merges is missing");
  }

 private:
  struct Frame {
    Slot slot;
    bool is_object;
    std::string key;   // objects: the member being read
    size_t count = 0;  // values begun inside this container so far
  };

  static Slot child_slot(const Frame& parent) {
    switch (parent.slot) {
      case Slot::kRoot:
        if (parent.key == "model") return Slot::kModel;
        if (parent.key == "added_tokens") return Slot::kAddedTokens;
        return Slot::kIgnored;
      case Slot::kModel:
        if (parent.key == "vocab") return Slot::kVocab;
        if (parent.key == "merges") return Slot::kMerges;
        return Slot::kIgnored;
      case Slot::kVocab:
        return Slot::kVocabEntry;
      case Slot::kMerges:
        return Slot::kMerge;
      case Slot::kMerge:
        return Slot::kMergePart;
      case Slot::kAddedTokens:
        return Slot::kAddedToken;
      case Slot::kAddedToken:
        if (parent.key == "id") return Slot::kAddedId;
        if (parent.key == "content") return Slot::kAddedContent;
        if (parent.key == "special") return Slot::kAddedSpecial;
        return Slot::kIgnored;
      default:
        return Slot::kIgnored;
    }
  }

  // The location of the value the first `depth` containers lead to, e.g. model.merges[12].
  std::string path(size_t depth) const {
    std::string out;
    for (size_t i = 0; i < depth; ++i) {
      const Frame& frame = frames_[i];
      if (!frame.is_object) {
        out += fmt::format("[{}]", frame.count - 1);
      } else if (frame.slot == Slot::kVocab) {
        out += fmt::format("[\"{}\"]", frame.key);
      } else {
        out += (out.empty() ? "" : ".") + frame.key;
      }
    }
    return out.empty() ? "the top-level value" : out;
  }

  Slot begin_value(Kind kind) {
    Slot slot = Slot::kRoot;
    if (!frames_.empty()) {
      ++frames_.back().count;
      slot = child_slot(frames_.back());
    }
    if (!accepts(slot, kind)) {
      fail(file_, fmt::format("{} must be {}", path(frames_.size()), expected(slot)));
    }
    return slot;
  }

  void open(Kind kind) {
    const Slot slot = begin_value(kind);
    if (slot == Slot::kVocab) seen_vocab_ = true;
    if (slot == Slot::kMerges) seen_merges_ = true;
    if (slot == Slot::kMerge) pair_.clear();
    if (slot == Slot::kAddedToken) added_ = {};
    frames_.push_back({slot, kind == Kind::kObject, {}, 0});
  }

  void close() {
    const size_t depth = frames_.size() - 1;  // the path of this container
    switch (frames_.back().slot) {
      case Slot::kMerge:
        if (pair_.size() != 2) {
          fail(file_, fmt::format("{} must be a [left, right] pair", path(depth)));
        }
        add_merge(pair_[0] + " " + pair_[1], depth);
        break;
      case Slot::kAddedToken:
        if (!added_.id || !added_.content) {
          fail(file_, fmt::format("{} needs an \"id\" and a \"content\"", path(depth)));
        }
        builder_.define(file_, path(depth), std::move(*added_.content), *added_.id,
                        /*added=*/true, added_.special);
        break;
      default:
        break;
    }
    frames_.pop_back();
  }

  // GGUF stores a merge as "left right" and ds4 looks a pair up by exactly that string, so each
  // half must be non-empty and free of spaces (byte-level BPE symbols spell a space as Ġ). `depth`
  // locates the merge for the message.
  void add_merge(std::string merge, size_t depth) {
    const size_t space = merge.find(' ');
    if (space == 0 || space == std::string::npos || space + 1 == merge.size() ||
        merge.find(' ', space + 1) != std::string::npos) {
      fail(file_, fmt::format("{} must be two non-empty symbols joined by one space, not '{}'",
                              path(depth), merge));
    }
    merges_.push_back(std::move(merge));
  }

  struct PendingAddedToken {
    std::optional<uint64_t> id;
    std::optional<std::string> content;
    bool special = false;
  };

  const fs::path& file_;
  VocabBuilder& builder_;
  std::vector<std::string>& merges_;
  std::vector<Frame> frames_;
  std::vector<std::string> pair_;  // the parts of the [left, right] merge being read
  PendingAddedToken added_;
  bool seen_vocab_ = false;
  bool seen_merges_ = false;
};

void read_tokenizer_json(const fs::path& file, VocabBuilder& builder,
                         std::vector<std::string>& merges) {
  const std::string text = read_file(file);
  TokenizerJsonReader reader(file, builder, merges);
  nlohmann::json::sax_parse(text, &reader);
  reader.finish();
}

void read_overlay(const fs::path& file, VocabBuilder& builder) {
  const nlohmann::json overlay = parse_json_file(file);
  if (!overlay.is_array()) fail(file, "must be an array of {\"id\", \"content\", \"special\"}");
  for (size_t i = 0; i < overlay.size(); ++i) {
    const nlohmann::json& entry = overlay[i];
    const std::string where = fmt::format("entry {}", i);
    if (!entry.is_object()) fail(file, where + " must be an object");
    const auto id = entry.find("id");
    const auto content = entry.find("content");
    const auto special = entry.find("special");
    if (id == entry.end() || !id->is_number_unsigned()) {
      fail(file, where + ": \"id\" must be a non-negative integer");
    }
    if (content == entry.end() || !content->is_string()) {
      fail(file, where + ": \"content\" must be a string");
    }
    if (special == entry.end() || !special->is_boolean()) {
      fail(file, where + ": \"special\" must be true or false");
    }
    builder.define(file, where, content->get<std::string>(), id->get<uint64_t>(),
                   /*added=*/true, special->get<bool>());
  }
}

using TokenIndex = std::unordered_map<std::string_view, uint32_t>;

// ds4 maps strings to ids, so a string at two ids would make one of them unreachable.
TokenIndex index_tokens(const fs::path& dir, const std::vector<std::string>& tokens) {
  TokenIndex index;
  index.reserve(tokens.size());
  for (uint32_t id = 0; id < tokens.size(); ++id) {
    const auto [it, inserted] = index.emplace(tokens[id], id);
    if (!inserted) {
      fail(dir,
           fmt::format("'{}' is the token of both id {} and id {}", tokens[id], it->second, id));
    }
  }
  return index;
}

// Hugging Face names the special tokens by string in tokenizer_config.json, either directly or as
// an AddedToken object with a "content".
uint32_t special_token_id(const fs::path& file, const nlohmann::json& config,
                          std::string_view field, const TokenIndex& index) {
  const auto value = config.find(field);
  if (value == config.end() || value->is_null()) fail(file, fmt::format("{} is missing", field));
  const nlohmann::json* content = &*value;
  if (value->is_object()) {
    const auto inner = value->find("content");
    content = inner == value->end() ? nullptr : &*inner;
  }
  if (content == nullptr || !content->is_string()) {
    fail(file, fmt::format("{} must be a string or an object with a string \"content\"", field));
  }
  const auto& text = content->get_ref<const std::string&>();
  const auto found = index.find(text);
  if (found == index.end()) fail(file, fmt::format("{} '{}' is not a token", field, text));
  return found->second;
}

bool has_tokenizer_files(const fs::path& dir) {
  std::error_code error;
  return fs::is_regular_file(dir / kTokenizerFile, error) &&
         fs::is_regular_file(dir / kOverlayFile, error) &&
         fs::is_regular_file(dir / kConfigFile, error);
}

}  // namespace

TokenizerVocab load_deepseek_v4_vocab(const fs::path& tokenizer_dir, uint32_t vocab_size) {
  const fs::path tokenizer_file = tokenizer_dir / kTokenizerFile;
  const fs::path overlay_file = tokenizer_dir / kOverlayFile;
  const fs::path config_file = tokenizer_dir / kConfigFile;

  TokenizerVocab vocab;
  VocabBuilder builder(vocab_size);
  read_tokenizer_json(tokenizer_file, builder, vocab.merges);
  read_overlay(overlay_file, builder);
  std::move(builder).finish(tokenizer_dir, vocab);

  const TokenIndex index = index_tokens(tokenizer_dir, vocab.tokens);
  for (const model::SpecialTokenName& special : model::kRequiredSpecialTokens) {
    std::string_view required = special.text;
    if (!index.contains(required)) {
      fail(tokenizer_dir, fmt::format("required token '{}' is missing (ds4 refuses to load a "
                                      "vocabulary without it)",
                                      required));
    }
  }

  const nlohmann::json config = parse_json_file(config_file);
  if (!config.is_object()) fail(config_file, "must be a JSON object");
  vocab.bos_id = special_token_id(config_file, config, "bos_token", index);
  vocab.eos_id = special_token_id(config_file, config, "eos_token", index);
  vocab.pad_id = special_token_id(config_file, config, "pad_token", index);
  return vocab;
}

void add_tokenizer_metadata(const TokenizerVocab& vocab, gguf::GgufMetadata& m) {
  using gguf::GgufValue;
  m.set("tokenizer.ggml.model", GgufValue::string("gpt2"));
  m.set("tokenizer.ggml.pre", GgufValue::string("joyai-llm"));
  m.set("tokenizer.ggml.tokens", GgufValue::string_array(vocab.tokens));
  m.set("tokenizer.ggml.merges", GgufValue::string_array(vocab.merges));
  m.set("tokenizer.ggml.token_type", GgufValue::i32_array(vocab.token_types));
  m.set("tokenizer.ggml.bos_token_id", GgufValue::u32(vocab.bos_id));
  m.set("tokenizer.ggml.eos_token_id", GgufValue::u32(vocab.eos_id));
  m.set("tokenizer.ggml.padding_token_id", GgufValue::u32(vocab.pad_id));
}

fs::path find_tokenizer_dir() {
  if (const char* env = std::getenv("MAGNETAR_TOKENIZER_DIR"); env != nullptr && *env != '\0') {
    if (!has_tokenizer_files(env)) {
      throw std::runtime_error(fmt::format("MAGNETAR_TOKENIZER_DIR={}: no {}, {} and {} there", env,
                                           kTokenizerFile, kOverlayFile, kConfigFile));
    }
    return env;
  }
  std::vector<fs::path> candidates;
  std::error_code error;
  const fs::path executable = fs::read_symlink("/proc/self/exe", error);
  if (!error) {
    candidates.push_back(executable.parent_path().parent_path() / "share" / "magnetar" /
                         kTokenizerDirName);
  }
  candidates.push_back(fs::path(MAGNETAR_DATA_DIR) / kTokenizerDirName);
  std::string searched;
  for (const fs::path& dir : candidates) {
    if (has_tokenizer_files(dir)) return dir;
    searched += (searched.empty() ? "" : ", ") + dir.string();
  }
  throw std::runtime_error(fmt::format(
      "no DeepSeek V4 tokenizer found (set MAGNETAR_TOKENIZER_DIR); looked in {}", searched));
}

}  // namespace magnetar::synth
