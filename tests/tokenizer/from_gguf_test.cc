// Tokenizer::from_gguf rejects missing or inconsistent metadata with a message naming the key.
#include <gtest/gtest.h>

#include <string>

#include "tokenizer/tokenizer.h"
#include "tokenizer_fixture.h"

namespace magnetar::tokenizer {
namespace {

using testing::v4_tokenizer_metadata;
using testing::write_and_open;

// from_gguf's error message for `metadata`, or "" when it loads.
std::string load_error(const gguf::GgufMetadata& metadata, const std::string& name) {
  try {
    Tokenizer::from_gguf(write_and_open(metadata, name));
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

TEST(FromGguf, MissingKeys) {
  for (const char* key :
       {"tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type",
        "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"}) {
    gguf::GgufMetadata m = v4_tokenizer_metadata();
    m.erase(key);
    EXPECT_EQ(load_error(m, "missing.gguf"), std::string(key) + " is missing");
  }
}

TEST(FromGguf, InconsistentValues) {
  gguf::GgufMetadata m = v4_tokenizer_metadata();
  m.set("tokenizer.ggml.tokens", gguf::GgufValue::u32(3));
  EXPECT_EQ(load_error(m, "tokens-type.gguf"), "tokenizer.ggml.tokens must be an array of strings");

  m = v4_tokenizer_metadata();
  m.set("tokenizer.ggml.token_type", gguf::GgufValue::i32_array({1, 1, 1}));
  EXPECT_NE(load_error(m, "types-length.gguf").find("tokenizer.ggml.token_type must be an array"),
            std::string::npos);

  m = v4_tokenizer_metadata();
  m.set("tokenizer.ggml.eos_token_id", gguf::GgufValue::u32(129280));
  EXPECT_NE(load_error(m, "eos.gguf").find("tokenizer.ggml.eos_token_id = 129280 is not a token"),
            std::string::npos);

  m = v4_tokenizer_metadata();
  m.set("tokenizer.ggml.merges", gguf::GgufValue::string_array({"Ġ t", "no_space"}));
  EXPECT_EQ(load_error(m, "merge-form.gguf"),
            "tokenizer.ggml.merges[1] 'no_space' is not two strings separated by one space");

  m = v4_tokenizer_metadata();
  m.set("tokenizer.ggml.merges", gguf::GgufValue::string_array({"Ġ zzzqqq"}));
  EXPECT_EQ(load_error(m, "merge-token.gguf"),
            "tokenizer.ggml.merges[0] 'Ġ zzzqqq' names a string that is not a token");

  m = v4_tokenizer_metadata();
  m.set("tokenizer.ggml.tokens", gguf::GgufValue::string_array({"a", "b"}));
  m.set("tokenizer.ggml.token_type", gguf::GgufValue::i32_array({1, 1}));
  m.set("tokenizer.ggml.merges", gguf::GgufValue::string_array({}));
  m.set("tokenizer.ggml.eos_token_id", gguf::GgufValue::u32(1));
  EXPECT_NE(load_error(m, "bytes.gguf").find("has no token for byte 0"), std::string::npos);
}

}  // namespace
}  // namespace magnetar::tokenizer
