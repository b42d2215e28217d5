// The official pre-tokenizer splits of official-encoding.md §5.3 (observed with Hugging Face
// `tokenizers`), including the ones where ds4's ASCII approximation differs.
#include "tokenizer/pre_tokenizer.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace magnetar::tokenizer {
namespace {

std::vector<std::string> split(std::string_view text) {
  static const PreTokenizer pre;
  std::vector<std::string_view> pieces;
  pre.split(text, pieces);
  return {pieces.begin(), pieces.end()};
}

using Pieces = std::vector<std::string>;

TEST(PreTokenizer, OfficialSplits) {
  EXPECT_EQ(split("Hello world"), (Pieces{"Hello", " world"}));
  EXPECT_EQ(split("    int x = 10;"), (Pieces{"   ", " int", " x", " =", " ", "10", ";"}));
  EXPECT_EQ(split("a.b(c)"), (Pieces{"a", ".b", "(c", ")"}));
  EXPECT_EQ(split("12345abc"), (Pieces{"123", "45", "abc"}));
  EXPECT_EQ(split("3.14159"), (Pieces{"3", ".", "141", "59"}));
  EXPECT_EQ(split("x  \n\n  y"), (Pieces{"x", "  \n\n", " ", " y"}));
  EXPECT_EQ(split("if (a) {\n    return;\n}"),
            (Pieces{"if", " (", "a", ")", " {\n", "   ", " return", ";\n", "}"}));
  EXPECT_EQ(split("日本語テキストabc"), (Pieces{"日本語テキスト", "abc"}));
  EXPECT_EQ(split("café中文 naïve"), (Pieces{"café", "中文", " naïve"}));
  EXPECT_EQ(split("“quoted” — dash"), (Pieces{"“", "quoted", "”", " —", " dash"}));
  EXPECT_EQ(split("１２３４"), (Pieces{"１２３", "４"}));
  EXPECT_EQ(split("x\u00A0y"), (Pieces{"x", "\u00A0y"}));
  EXPECT_EQ(split("a\u3000b"), (Pieces{"a", "\u3000b"}));
  EXPECT_EQ(split("Hello!!  \n"), (Pieces{"Hello", "!!", "  \n"}));
  EXPECT_EQ(split("$100"), (Pieces{"$", "100"}));
  EXPECT_EQ(split(std::string_view("a\0b", 3)), (Pieces{"a", std::string("\0b", 2)}));
  EXPECT_EQ(split("\t\tx"), (Pieces{"\t", "\tx"}));
}

}  // namespace
}  // namespace magnetar::tokenizer
