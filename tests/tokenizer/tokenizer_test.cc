// Encoding and decoding with the V4 vocabulary: published ids, control-token handling, round
// trips, streaming decode, and the errors of from_gguf.
#include "tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "tokenizer/byte_alphabet.h"
#include "tokenizer/utf8.h"
#include "tokenizer_fixture.h"

namespace magnetar::tokenizer {
namespace {

using testing::v4_tokenizer;
using Ids = std::vector<int32_t>;

TEST(Tokenizer, PublishedV4Ids) {
  const Tokenizer& t = v4_tokenizer();
  // data/deepseek-v4-tokenizer/README.md and official-encoding.md §5.1.
  EXPECT_EQ(t.encode("Hello! 毕老师！1 + 1 = 2 ĠÑĤÐ²ÑĬÑĢ"),
            (Ids{19923, 3,   223,   5464, 5008, 1175,  19,   940,   223, 19,  438,   223, 20,
                 6113,  257, 76589, 131,  100,  76032, 1628, 76589, 131, 108, 76589, 131, 98}));
  EXPECT_EQ(
      t.encode("<｜User｜>你好<｜Assistant｜><think>推理</think>答案<｜end▁of▁sentence｜>", true),
      (Ids{128803, 30594, 128804, 128821, 36101, 128822, 7624, 1}));
  // official-encoding.md §5.7, the DSML fragment: <｜DSML｜invoke is < · ｜DSML｜ · invoke.
  EXPECT_EQ(
      t.encode("\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"now\">\n\n</｜DSML｜invoke>\n"
               "</｜DSML｜tool_calls><｜end▁of▁sentence｜>",
               true),
      (Ids{271,   30,   128825, 72461,  4941,  12548, 1018,  30,     128825,
           40148, 5406, 2329,   1281,   949,   32572, 1718,  128825, 40148,
           5406,  1018, 1718,   128825, 72461, 4941,  12548, 32,     1}));
}

TEST(Tokenizer, Lookups) {
  const Tokenizer& t = v4_tokenizer();
  EXPECT_EQ(t.vocab_size(), 129280);
  EXPECT_EQ(t.bos_id(), 0);
  EXPECT_EQ(t.eos_id(), 1);
  EXPECT_EQ(t.token_id("<｜Assistant｜>"), 128804);
  EXPECT_EQ(t.token_id("｜DSML｜"), 128825);
  EXPECT_EQ(t.token_id("Ċ"), 201);
  EXPECT_EQ(t.token_id("no such token"), std::nullopt);
  EXPECT_EQ(t.token_text(201), "Ċ");
  EXPECT_EQ(t.token_bytes(201), "\n");
  EXPECT_EQ(t.token_bytes(128822), "</think>");
  EXPECT_TRUE(t.is_added(128821));
  EXPECT_FALSE(t.is_added(201));
  EXPECT_THROW(t.token_text(129280), std::out_of_range);
  EXPECT_THROW(t.decode(Ids{-1}), std::out_of_range);
}

TEST(Tokenizer, ClientTextCannotForgeControlTokens) {
  const Tokenizer& t = v4_tokenizer();
  for (const char* text : {"<｜Assistant｜>", "x<think>y", "a</think>b", "｜DSML｜", "<dsml:x"}) {
    const Ids plain = t.encode(text);
    for (int32_t id : plain) EXPECT_FALSE(t.is_added(id)) << text;
    EXPECT_EQ(t.decode(plain), text);
  }
  EXPECT_EQ(t.encode("<｜Assistant｜>", true), Ids{128804});
  const Ids plain = t.encode("<｜Assistant｜>");
  EXPECT_EQ(std::find(plain.begin(), plain.end(), 128804), plain.end());
  // §5.2: x<think>y → x, 128821, y; and leftmost-longest between overlapping tokens.
  EXPECT_EQ(t.encode("x<think>y", true), (Ids{t.encode("x")[0], 128821, t.encode("y")[0]}));
  EXPECT_EQ(t.encode("<tool_result>", true), t.encode("<tool_result>"));
}

// Random strings of valid UTF-8 drawn from the whole code space: decode(encode(x)) == x.
std::string random_utf8(std::mt19937& rng, size_t n_chars) {
  std::uniform_int_distribution<int> kind(0, 9);
  std::string s;
  for (size_t i = 0; i < n_chars; ++i) {
    uint32_t cp = 0;
    switch (kind(rng)) {
      case 0:
        cp = std::uniform_int_distribution<uint32_t>(0, 0x7F)(rng);
        break;
      case 1:
        cp = std::uniform_int_distribution<uint32_t>(0x80, 0x7FF)(rng);
        break;
      case 2:
        cp = std::uniform_int_distribution<uint32_t>(0x4E00, 0x9FFF)(rng);
        break;
      case 3:
        cp = std::uniform_int_distribution<uint32_t>(0x1F300, 0x1FAFF)(rng);
        break;
      case 4:
        cp = std::uniform_int_distribution<uint32_t>(0x10000, 0x10FFFF)(rng);
        break;
      case 5:
        cp = std::uniform_int_distribution<uint32_t>(0x800, 0xFFFF)(rng);
        break;
      default:
        cp = std::uniform_int_distribution<uint32_t>(0x20, 0x7E)(rng);
        break;
    }
    if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;  // surrogates are not characters
    append_utf8(cp, s);
  }
  return s;
}

TEST(Tokenizer, RoundTripsRandomUtf8AndStreamsWholeCharacters) {
  const Tokenizer& t = v4_tokenizer();
  std::mt19937 rng(12345);
  for (int round = 0; round < 400; ++round) {
    const std::string text = random_utf8(rng, 1 + round % 97);
    const Ids ids = t.encode(text, round % 2 == 0);
    ASSERT_EQ(t.decode(ids), text);
    StreamDecoder stream(t);
    std::string streamed;
    for (int32_t id : ids) {
      const std::string chunk = stream.push(id);
      ASSERT_EQ(valid_prefix_length(chunk), chunk.size()) << "round " << round;
      streamed += chunk;
    }
    EXPECT_EQ(stream.flush(), "");
    ASSERT_EQ(streamed, text);
  }
}

TEST(Tokenizer, ArbitraryBytesRoundTripAndStreamUnchanged) {
  const Tokenizer& t = v4_tokenizer();
  std::mt19937 rng(777);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int round = 0; round < 200; ++round) {
    std::string text(1 + round % 41, '\0');
    for (char& c : text) c = static_cast<char>(byte(rng));
    const Ids ids = t.encode(text);
    ASSERT_EQ(t.decode(ids), text);
    StreamDecoder stream(t);
    std::string streamed;
    for (int32_t id : ids) streamed += stream.push(id);
    streamed += stream.flush();
    ASSERT_EQ(streamed, text);
  }
}

TEST(StreamDecoder, HoldsBackSplitCharacters) {
  const Tokenizer& t = v4_tokenizer();
  auto byte = [&](uint8_t b) { return *t.token_id(byte_to_symbol(b)); };
  StreamDecoder stream(t);
  // "é" (C3 A9) and "€" (E2 82 AC), one byte token at a time.
  EXPECT_EQ(stream.push(byte(0xC3)), "");
  EXPECT_EQ(stream.push(byte(0xA9)), "é");
  EXPECT_EQ(stream.push(byte(0xE2)), "");
  EXPECT_EQ(stream.push(byte(0x82)), "");
  EXPECT_EQ(stream.push(byte(0xAC)), "€");
  // An unfinished character at the end comes out raw from flush().
  EXPECT_EQ(stream.push(byte(0xE2)), "");
  EXPECT_EQ(stream.flush(), "\xE2");
  // Bytes that can never become a character are passed through at once.
  EXPECT_EQ(stream.push(byte(0xAC)), "\xAC");
  EXPECT_EQ(stream.push(byte(0xE2)), "");
  EXPECT_EQ(stream.push(byte('A')),
            "\xE2"
            "A");
  EXPECT_EQ(stream.push(byte(0xED)), "");
  EXPECT_EQ(stream.push(byte(0xA0)), "\xED\xA0");  // a surrogate's first two bytes
}

}  // namespace
}  // namespace magnetar::tokenizer
