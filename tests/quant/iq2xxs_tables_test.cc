// The embedded IQ2_XXS tables against the reference data file data/iq2xxs_tables.txt.
#include "quant/iq2xxs_tables.h"

#include <gtest/gtest.h>

#include <bit>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace magnetar::quant {
namespace {

// Parses the file's 'TABLE <NAME> <COUNT> <TYPE> <RADIX>' ... 'END' sections ('#' comments,
// whitespace or comma separated values).
std::map<std::string, std::vector<uint64_t>> load_tables() {
  std::ifstream in(MAGNETAR_DATA_DIR "/iq2xxs_tables.txt");
  EXPECT_TRUE(in.good()) << "cannot open " MAGNETAR_DATA_DIR "/iq2xxs_tables.txt";
  std::map<std::string, std::vector<uint64_t>> tables;
  std::string line;
  std::string name;
  size_t count = 0;
  int radix = 10;
  while (std::getline(in, line)) {
    line = line.substr(0, line.find('#'));
    for (char& c : line) {
      if (c == ',') c = ' ';
    }
    std::istringstream words(line);
    std::string word;
    while (words >> word) {
      if (word == "TABLE") {
        std::string type;
        std::string radix_name;
        words >> name >> count >> type >> radix_name;
        radix = radix_name == "hex" ? 16 : 10;
        tables[name].clear();
      } else if (word == "END") {
        EXPECT_EQ(tables[name].size(), count) << name;
        name.clear();
      } else {
        tables[name].push_back(std::stoull(word, nullptr, radix));
      }
    }
  }
  return tables;
}

class Iq2xxsTables : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { tables_ = new auto(load_tables()); }
  static void TearDownTestSuite() { delete tables_; }
  static const std::vector<uint64_t>& table(const std::string& name) {
    EXPECT_EQ(tables_->count(name), 1u) << name;
    return (*tables_)[name];
  }
  static std::map<std::string, std::vector<uint64_t>>* tables_;
};
std::map<std::string, std::vector<uint64_t>>* Iq2xxsTables::tables_ = nullptr;

TEST_F(Iq2xxsTables, GridMatchesFile) {
  const auto& grid = table("IQ2XXS_GRID");
  ASSERT_EQ(grid.size(), 256u);
  for (int g = 0; g < 256; ++g) EXPECT_EQ(kIq2xxsGrid[g], grid[g]) << g;
  // The file's byte-expanded copy fixes the byte order: byte i of entry g is weight i.
  const auto& bytes = table("IQ2XXS_GRID_BYTES");
  ASSERT_EQ(bytes.size(), 2048u);
  for (int g = 0; g < 256; ++g) {
    for (int i = 0; i < 8; ++i) EXPECT_EQ((kIq2xxsGrid[g] >> (8 * i)) & 0xff, bytes[8 * g + i]);
  }
}

TEST_F(Iq2xxsTables, SignsMatchFile) {
  const auto& signs = table("KSIGNS_IQ2XS");
  ASSERT_EQ(signs.size(), 128u);
  for (int s = 0; s < 128; ++s) EXPECT_EQ(kIq2xsSigns[s], signs[s]) << s;
}

TEST_F(Iq2xxsTables, KgridMatchesFile) {
  const auto& kgrid = table("IQ2XXS_KGRID");
  ASSERT_EQ(kgrid.size(), 256u);
  for (int g = 0; g < 256; ++g) EXPECT_EQ(kIq2xxsKgrid[g], kgrid[g]) << g;
}

TEST_F(Iq2xxsTables, MaskIsOneBitPerWeight) {
  const auto& mask = table("KMASK_IQ2XS");
  ASSERT_EQ(mask.size(), 8u);
  for (int j = 0; j < 8; ++j) EXPECT_EQ(mask[j], 1u << j);
}

TEST_F(Iq2xxsTables, KgridExpandsIntoGrid) {
  const uint8_t magnitude[3] = {0x08, 0x19, 0x2b};
  for (int g = 0; g < 256; ++g) {
    uint64_t expanded = 0;
    for (int i = 0; i < 8; ++i) {
      const int level = (kIq2xxsKgrid[g] >> (2 * i)) & 3;
      ASSERT_LT(level, 3) << g;
      expanded |= static_cast<uint64_t>(magnitude[level]) << (8 * i);
    }
    EXPECT_EQ(expanded, kIq2xxsGrid[g]) << g;
  }
  // Ascending and within the encoder's 43692-entry map.
  for (int g = 1; g < 256; ++g) EXPECT_LT(kIq2xxsKgrid[g - 1], kIq2xxsKgrid[g]);
  EXPECT_LE(kIq2xxsKgrid[255], 43690);
}

TEST_F(Iq2xxsTables, SignsHaveEvenParity) {
  for (int s = 0; s < 128; ++s) {
    EXPECT_EQ(kIq2xsSigns[s] & 127, s);
    EXPECT_EQ(std::popcount(static_cast<unsigned>(kIq2xsSigns[s])) % 2, 0) << s;
  }
}

TEST_F(Iq2xxsTables, SignMasksSpreadTheSignBits) {
  for (int s = 0; s < 128; ++s) {
    for (int i = 0; i < 8; ++i) {
      const uint64_t byte = (kIq2xsSignMasks.mask[s] >> (8 * i)) & 0xff;
      EXPECT_EQ(byte, (kIq2xsSigns[s] >> i) & 1 ? 0xffu : 0u) << s << " " << i;
    }
  }
}

}  // namespace
}  // namespace magnetar::quant
