#include "synth/tokenizer_vocab.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_set>

namespace magnetar::synth {
namespace {

namespace fs = std::filesystem;

const fs::path kDataTokenizerDir = fs::path(MAGNETAR_DATA_DIR) / "deepseek-v4-tokenizer";

// The repository's tokenizer, loaded once for all tests that read it.
const TokenizerVocab& real_vocab() {
  static const TokenizerVocab vocab = load_deepseek_v4_vocab(kDataTokenizerDir);
  return vocab;
}

// GPT-2's byte-level alphabet: the printable Latin-1 bytes stand for themselves, the other 68
// bytes map in order to U+0100 onwards. Returns the UTF-8 form of `byte`'s symbol.
std::string gpt2_symbol(int byte) {
  const auto printable = [](int b) {
    return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  };
  int code_point = byte;
  if (!printable(byte)) {
    code_point = 256;
    for (int b = 0; b < byte; ++b) code_point += printable(b) ? 0 : 1;
  }
  if (code_point < 0x80) return std::string(1, static_cast<char>(code_point));
  return {static_cast<char>(0xC0 | (code_point >> 6)),
          static_cast<char>(0x80 | (code_point & 0x3F))};
}

TEST(RealVocab, HasTheModelsVocabSize) {
  EXPECT_EQ(real_vocab().tokens.size(), 129280u);
  EXPECT_EQ(real_vocab().token_types.size(), 129280u);
}

TEST(RealVocab, KnownIds) {
  const auto& tokens = real_vocab().tokens;
  EXPECT_EQ(tokens[0], "<｜begin▁of▁sentence｜>");
  EXPECT_EQ(tokens[1], "<｜end▁of▁sentence｜>");
  EXPECT_EQ(tokens[201], "Ċ");
  EXPECT_EQ(tokens[128799], "<｜place▁holder▁no▁799｜>");  // V4.1 renames it <｜System｜>
  EXPECT_EQ(tokens[128800], "<｜fim▁hole｜>");
  EXPECT_EQ(tokens[128803], "<｜User｜>");
  EXPECT_EQ(tokens[128804], "<｜Assistant｜>");
  EXPECT_EQ(tokens[128821], "<think>");
  EXPECT_EQ(tokens[128822], "</think>");
  EXPECT_EQ(tokens[128825], "｜DSML｜");
  EXPECT_EQ(tokens[128828], "<｜latest_reminder｜>");
  EXPECT_EQ(tokens[128847], "<|place_holder_mm_span_0021|>");
  EXPECT_EQ(tokens[129261], "<|place_holder_mm_span_0435|>");
  EXPECT_EQ(tokens[129265], "<｜/table>｜");  // sic: DeepSeek's spelling
  EXPECT_EQ(tokens[129279], "<｜image｜>");
}

TEST(RealVocab, SpecialIds) {
  EXPECT_EQ(real_vocab().bos_id, 0u);
  EXPECT_EQ(real_vocab().eos_id, 1u);
  EXPECT_EQ(real_vocab().pad_id, 1u);  // tokenizer_config.json pads with EOS
}

TEST(RealVocab, Merges) {
  ASSERT_EQ(real_vocab().merges.size(), 127741u);
  EXPECT_EQ(real_vocab().merges[0], "Ġ t");
}

// An independent check on the data: BPE can only produce what the merges build from tokens.
TEST(RealVocab, EveryMergeJoinsTwoTokensIntoAToken) {
  const auto& tokens = real_vocab().tokens;
  const std::unordered_set<std::string_view> vocab(tokens.begin(), tokens.end());
  for (const std::string& merge : real_vocab().merges) {
    const size_t space = merge.find(' ');
    ASSERT_NE(space, std::string::npos) << merge;
    const std::string left = merge.substr(0, space);
    const std::string right = merge.substr(space + 1);
    EXPECT_TRUE(vocab.contains(left)) << merge;
    EXPECT_TRUE(vocab.contains(right)) << merge;
    EXPECT_TRUE(vocab.contains(left + right)) << merge;
  }
}

// Byte-level BPE can spell any byte string only if every single-byte symbol is a token.
TEST(RealVocab, HasEveryByteLevelSymbol) {
  const auto& tokens = real_vocab().tokens;
  for (int byte = 0; byte < 256; ++byte) {
    const std::string symbol = gpt2_symbol(byte);
    const auto it = std::find(tokens.begin(), tokens.end(), symbol);
    ASSERT_NE(it, tokens.end()) << "byte " << byte;
    EXPECT_EQ(real_vocab().token_types[it - tokens.begin()], kTokenTypeNormal) << "byte " << byte;
  }
}

TEST(RealVocab, TokenTypes) {
  const auto& types = real_vocab().token_types;
  EXPECT_EQ(types[100], kTokenTypeNormal);
  EXPECT_EQ(types[127999], kTokenTypeNormal);
  EXPECT_EQ(types[0], kTokenTypeControl);
  EXPECT_EQ(types[2], kTokenTypeControl);       // <｜▁pad▁｜>
  EXPECT_EQ(types[128803], kTokenTypeControl);  // <｜User｜>: not flagged special, but shaped so
  EXPECT_EQ(types[128805], kTokenTypeControl);  // <|EOT|>
  EXPECT_EQ(types[128847], kTokenTypeControl);
  EXPECT_EQ(types[128821], kTokenTypeUserDefined);  // <think>
  EXPECT_EQ(types[128825], kTokenTypeUserDefined);  // ｜DSML｜
  EXPECT_EQ(types[129265], kTokenTypeUserDefined);  // <｜/table>｜ does not end in ｜>
  // 128,000 BPE entries, of which ids 0-2 are restated as added tokens; 1,283 added tokens, six
  // of them (<think>, </think>, ｜DSML｜, <dsml:, </dsml:, <｜/table>｜) not control-shaped.
  EXPECT_EQ(std::count(types.begin(), types.end(), kTokenTypeNormal), 127997);
  EXPECT_EQ(std::count(types.begin(), types.end(), kTokenTypeControl), 1277);
  EXPECT_EQ(std::count(types.begin(), types.end(), kTokenTypeUserDefined), 6);
  EXPECT_EQ(std::count(types.begin(), types.end(), kTokenTypeUnused), 0);
}

// A small tokenizer folder in the same formats: BPE ids 0-2, added tokens 3-6 in
// tokenizer.json, the V4 tokens ds4 needs in the overlay at 7-9.
struct TinyTokenizer {
  std::string tokenizer_json = R"({
  "version": "1.0",
  "added_tokens": [
    {"id": 3, "content": "<｜begin▁of▁sentence｜>", "special": true, "normalized": false},
    {"id": 4, "content": "<｜end▁of▁sentence｜>", "special": true},
    {"id": 5, "content": "<｜User｜>", "special": false},
    {"id": 6, "content": "<｜Assistant｜>", "special": false}
  ],
  "normalizer": null,
  "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "ByteLevel"}]},
  "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}
})";
  std::string overlay = R"([
  {"id": 7, "content": "<think>", "special": false},
  {"id": 8, "content": "</think>", "special": false},
  {"id": 9, "content": "｜DSML｜", "special": false}
])";
  std::string config = R"({
  "bos_token": {"__type": "AddedToken", "content": "<｜begin▁of▁sentence｜>"},
  "eos_token": "<｜end▁of▁sentence｜>",
  "pad_token": "<｜end▁of▁sentence｜>"
})";

  // Writes the three files into a fresh folder named after the running test.
  fs::path write() const {
    const fs::path dir = fs::path(MAGNETAR_TEST_TMP) / "tokenizer_vocab" /
                         ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(dir);
    fs::create_directories(dir);
    std::ofstream(dir / "tokenizer.json") << tokenizer_json;
    std::ofstream(dir / "v4_added_tokens.json") << overlay;
    std::ofstream(dir / "tokenizer_config.json") << config;
    return dir;
  }
};

std::string replaced(std::string text, std::string_view from, std::string_view to) {
  const size_t at = text.find(from);
  if (at == std::string::npos) throw std::logic_error("test data lacks " + std::string(from));
  return text.replace(at, from.size(), to);
}

// Expects loading to fail with a message that contains every one of `parts`.
void expect_load_error(const fs::path& dir, uint32_t vocab_size,
                       std::initializer_list<std::string_view> parts) {
  try {
    load_deepseek_v4_vocab(dir, vocab_size);
    ADD_FAILURE() << "loading " << dir << " succeeded";
  } catch (const std::runtime_error& error) {
    const std::string message = error.what();
    for (std::string_view part : parts) {
      EXPECT_NE(message.find(part), std::string::npos) << "'" << part << "' not in: " << message;
    }
  }
}

TEST(TinyVocab, LoadsPadsAndTypes) {
  const TokenizerVocab vocab = load_deepseek_v4_vocab(TinyTokenizer().write(), 12);
  const std::vector<std::string> tokens = {"a",
                                           "b",
                                           "ab",
                                           "<｜begin▁of▁sentence｜>",
                                           "<｜end▁of▁sentence｜>",
                                           "<｜User｜>",
                                           "<｜Assistant｜>",
                                           "<think>",
                                           "</think>",
                                           "｜DSML｜",
                                           "[PAD10]",
                                           "[PAD11]"};
  EXPECT_EQ(vocab.tokens, tokens);
  const std::vector<int32_t> types = {
      kTokenTypeNormal,      kTokenTypeNormal,      kTokenTypeNormal,  kTokenTypeControl,
      kTokenTypeControl,     kTokenTypeControl,     kTokenTypeControl, kTokenTypeUserDefined,
      kTokenTypeUserDefined, kTokenTypeUserDefined, kTokenTypeUnused,  kTokenTypeUnused};
  EXPECT_EQ(vocab.token_types, types);
  EXPECT_EQ(vocab.merges, std::vector<std::string>{"a b"});
  EXPECT_EQ(vocab.bos_id, 3u);
  EXPECT_EQ(vocab.eos_id, 4u);
  EXPECT_EQ(vocab.pad_id, 4u);
}

TEST(TinyVocab, AcceptsMergePairs) {
  TinyTokenizer tiny;
  tiny.tokenizer_json = replaced(tiny.tokenizer_json, R"(["a b"])", R"([["a", "b"]])");
  EXPECT_EQ(load_deepseek_v4_vocab(tiny.write(), 10).merges, std::vector<std::string>{"a b"});
}

TEST(TinyVocab, AcceptsOverlayRestatingATokenizerJsonId) {
  TinyTokenizer tiny;
  tiny.overlay =
      replaced(tiny.overlay, "[", R"([{"id": 5, "content": "<｜User｜>", "special": false},)");
  EXPECT_EQ(load_deepseek_v4_vocab(tiny.write(), 10).tokens[5], "<｜User｜>");
}

TEST(TinyVocabErrors, MissingDirectory) {
  expect_load_error(fs::path(MAGNETAR_TEST_TMP) / "no-such-tokenizer", 10,
                    {"tokenizer.json", "cannot open"});
}

TEST(TinyVocabErrors, MalformedTokenizerJson) {
  TinyTokenizer tiny;
  tiny.tokenizer_json.resize(tiny.tokenizer_json.size() / 2);
  expect_load_error(tiny.write(), 10, {"tokenizer.json", "malformed JSON"});
}

TEST(TinyVocabErrors, MalformedOverlay) {
  TinyTokenizer tiny;
  tiny.overlay = replaced(tiny.overlay, "\"special\": false}", "\"special\": false");
  expect_load_error(tiny.write(), 10, {"v4_added_tokens.json", "malformed JSON"});
}

TEST(TinyVocabErrors, OverlayContradictsTokenizerJson) {
  TinyTokenizer tiny;
  tiny.overlay = replaced(tiny.overlay, R"("id": 7)", R"("id": 5)");
  expect_load_error(tiny.write(), 10,
                    {"v4_added_tokens.json", "entry 0", "id 5", "<think>", "<｜User｜>"});
}

TEST(TinyVocabErrors, OverlayContradictsSpecialFlag) {
  TinyTokenizer tiny;
  tiny.overlay = replaced(tiny.overlay, "[",
                          R"([{"id": 3, "content": "<｜begin▁of▁sentence｜>", "special": false},)");
  expect_load_error(tiny.write(), 10, {"v4_added_tokens.json", "id 3", "special"});
}

TEST(TinyVocabErrors, DuplicateIdInVocab) {
  TinyTokenizer tiny;
  tiny.tokenizer_json = replaced(tiny.tokenizer_json, R"("b": 1)", R"("b": 0)");
  expect_load_error(tiny.write(), 10, {"tokenizer.json", "model.vocab", "id 0", "'b'", "'a'"});
}

TEST(TinyVocabErrors, IdNotBelowVocabSize) {
  expect_load_error(TinyTokenizer().write(), 9, {"v4_added_tokens.json", "id 9", "vocab_size 9"});
}

TEST(TinyVocabErrors, HoleBelowTheLargestId) {
  TinyTokenizer tiny;
  tiny.tokenizer_json = replaced(tiny.tokenizer_json, R"(, "ab": 2)", "");
  expect_load_error(tiny.write(), 10, {"no token for id 2"});
}

TEST(TinyVocabErrors, RequiredTokenMissing) {
  TinyTokenizer tiny;
  tiny.overlay = replaced(tiny.overlay, "｜DSML｜", "DSML");
  expect_load_error(tiny.write(), 10, {"required token", "｜DSML｜"});
}

TEST(TinyVocabErrors, StringAtTwoIds) {
  TinyTokenizer tiny;
  tiny.overlay =
      replaced(tiny.overlay, "[", R"([{"id": 10, "content": "<think>", "special": false},)");
  expect_load_error(tiny.write(), 12, {"'<think>'", "id 7 and id 10"});
}

TEST(TinyVocabErrors, WrongValueType) {
  TinyTokenizer tiny;
  tiny.tokenizer_json = replaced(tiny.tokenizer_json, R"("a": 0)", R"("a": "0")");
  expect_load_error(tiny.write(), 10,
                    {"tokenizer.json", "model.vocab[\"a\"] must be a non-negative integer"});
}

TEST(TinyVocabErrors, MergeWithoutSpace) {
  TinyTokenizer tiny;
  tiny.tokenizer_json = replaced(tiny.tokenizer_json, R"("a b")", R"("ab")");
  expect_load_error(tiny.write(), 10, {"tokenizer.json", "model.merges[0]", "'ab'"});
}

TEST(TinyVocabErrors, MissingVocab) {
  TinyTokenizer tiny;
  tiny.tokenizer_json = replaced(tiny.tokenizer_json, R"("vocab")", R"("vocabulary")");
  expect_load_error(tiny.write(), 10, {"tokenizer.json", "model.vocab is missing"});
}

TEST(TinyVocabErrors, PadTokenMissing) {
  TinyTokenizer tiny;
  tiny.config = replaced(tiny.config, R"(,
  "pad_token": "<｜end▁of▁sentence｜>")",
                         "");
  expect_load_error(tiny.write(), 10, {"tokenizer_config.json", "pad_token is missing"});
}

// Sets an environment variable for one test and restores the previous value afterwards.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value != nullptr) {
      setenv(name, value, 1);
    } else {
      unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      setenv(name_, old_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST(FindTokenizerDir, PrefersTheEnvironmentVariable) {
  const fs::path dir = TinyTokenizer().write();
  ScopedEnv env("MAGNETAR_TOKENIZER_DIR", dir.c_str());
  EXPECT_EQ(find_tokenizer_dir(), dir);
}

TEST(FindTokenizerDir, RejectsAnEnvironmentVariableWithoutTheFiles) {
  const fs::path dir = fs::path(MAGNETAR_TEST_TMP) / "tokenizer_vocab" / "empty";
  fs::create_directories(dir);
  ScopedEnv env("MAGNETAR_TOKENIZER_DIR", dir.c_str());
  try {
    find_tokenizer_dir();
    ADD_FAILURE() << "an empty MAGNETAR_TOKENIZER_DIR was accepted";
  } catch (const std::runtime_error& error) {
    EXPECT_NE(std::string(error.what()).find("MAGNETAR_TOKENIZER_DIR="), std::string::npos);
  }
}

// The test binary is not installed, so the search ends at the source tree's copy.
TEST(FindTokenizerDir, FallsBackToTheSourceTree) {
  ScopedEnv env("MAGNETAR_TOKENIZER_DIR", nullptr);
  EXPECT_EQ(find_tokenizer_dir(), kDataTokenizerDir);
}

}  // namespace
}  // namespace magnetar::synth
