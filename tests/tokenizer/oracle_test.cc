// Agreement with Hugging Face on the corpus: tests/tokenizer/oracle/expected.json holds the ids
// that Transformers.js computes for every tests/tokenizer/corpus/*.txt file (see
// oracle/make_expected.mjs), with added tokens matched ("special") and without ("plain"). Every
// id must agree; a mismatch is reported with its position and the text around it.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"
#include "tokenizer_fixture.h"

namespace magnetar::tokenizer {
namespace {

namespace fs = std::filesystem;

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// "" when equal, else where the sequences first differ and what the ids there decode to.
std::string first_difference(const Tokenizer& t, const std::vector<int32_t>& got,
                             const std::vector<int32_t>& want) {
  size_t i = 0;
  while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
  if (i == got.size() && i == want.size()) return "";
  auto around = [&](const std::vector<int32_t>& ids) {
    std::string s;
    for (size_t k = i; k < ids.size() && k < i + 6; ++k) {
      s += std::to_string(ids[k]) + "'" + t.token_bytes(ids[k]) + "' ";
    }
    return s;
  };
  const size_t from = i < 8 ? 0 : i - 8;
  const std::vector<int32_t> before(want.begin() + from, want.begin() + i);
  return "first difference at id " + std::to_string(i) + " of " + std::to_string(want.size()) +
         " after text '" + t.decode(before) + "': got " + around(got) + "; want " + around(want);
}

TEST(HuggingFaceOracle, CorpusIdsAgreeExactly) {
  const Tokenizer& t = testing::v4_tokenizer();
  const fs::path dir = MAGNETAR_TOKENIZER_TEST_DIR;
  const nlohmann::json expected = nlohmann::json::parse(read_file(dir / "oracle/expected.json"));
  size_t files = 0;
  size_t bytes = 0;
  size_t ids = 0;
  for (const nlohmann::json& file : expected.at("files")) {
    const std::string name = file.at("name");
    const std::string text = read_file(dir / "corpus" / name);
    ASSERT_EQ(text.size(), file.at("bytes").get<size_t>())
        << name << " changed since expected.json was made; rerun oracle/make_expected.mjs";
    for (const bool special : {false, true}) {
      const std::vector<int32_t> want = file.at(special ? "special" : "plain");
      const std::vector<int32_t> got = t.encode(text, special);
      EXPECT_EQ(first_difference(t, got, want), "") << name << (special ? " (special)" : "");
      ids += want.size();
    }
    bytes += text.size();
    ++files;
  }
  EXPECT_GE(files, 6u);
  EXPECT_GE(bytes, 200'000u);
  RecordProperty("corpus_bytes", std::to_string(bytes));
  RecordProperty("ids_compared", std::to_string(ids));
  std::printf("compared %zu ids for %zu files, %zu bytes\n", ids, files, bytes);
}

}  // namespace
}  // namespace magnetar::tokenizer
