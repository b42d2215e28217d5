// The reader against hand-assembled images (tests/support/gguf_corpus.h): every value type and
// tensor field decodes to what was written, and every corrupt variant is refused cleanly.
#include "gguf/gguf_reader.h"

#include <gtest/gtest.h>

#include "gguf_corpus.h"

namespace magnetar::gguf {
namespace {

using testing::corrupt_cases;
using testing::small_valid_image;

TEST(GgufReader, DecodesEveryValueType) {
  std::vector<uint8_t> bytes = small_valid_image().encode();
  GgufFile f = GgufFile::parse(bytes, "valid");
  const GgufMetadata& m = f.metadata();
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(m.size(), 15u);
  EXPECT_EQ(*m.get_string("general.architecture"), "test");
  EXPECT_EQ(m.find("t.u8")->type(), GgufType::kUint8);
  EXPECT_EQ(*m.find("t.u8")->as_u64(), 200u);
  EXPECT_EQ(*m.find("t.i8")->as_i64(), -100);
  EXPECT_EQ(*m.find("t.u16")->as_u64(), 60000u);
  EXPECT_EQ(*m.find("t.i16")->as_i64(), -30000);
  EXPECT_EQ(*m.find("t.u32")->as_u64(), 4000000000u);
  EXPECT_EQ(*m.find("t.i32")->as_i64(), -2000000000);
  EXPECT_EQ(*m.find("t.f32")->as_f64(), 1.5);
  EXPECT_EQ(*m.find("t.bool")->as_bool(), true);
  EXPECT_EQ(*m.find("t.u64")->as_u64(), 1ull << 60);
  EXPECT_EQ(*m.find("t.i64")->as_i64(), -(1ll << 60));
  EXPECT_EQ(*m.find("t.f64")->as_f64(), -2.25);
  EXPECT_FALSE(m.find("t.i8")->as_u64().has_value()) << "negative values are not unsigned";
  const GgufValue* strings = m.find("t.strings");
  ASSERT_TRUE(strings->is_array());
  EXPECT_EQ(strings->element_type(), GgufType::kString);
  EXPECT_EQ(strings->array()->strings, (std::vector<std::string>{"a", "", "\xC4\xA0t"}));
  const GgufValue* nested = m.find("t.nested");
  ASSERT_EQ(nested->array_size(), 2u);
  EXPECT_EQ(*nested->element(0).element(1).as_u64(), 8u);
  EXPECT_EQ(*nested->element(1).element(0).as_i64(), -9);
}

TEST(GgufReader, PlacesTensors) {
  std::vector<uint8_t> bytes = small_valid_image().encode();
  GgufFile f = GgufFile::parse(bytes, "valid");
  ASSERT_EQ(f.tensors().size(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.data_offset() % 32, 0u);
  EXPECT_EQ(f.data_offset() + 192, bytes.size());
  const TensorInfo* a = f.find_tensor("a");
  const TensorInfo* b = f.find_tensor("b");
  const TensorInfo* c = f.find_tensor("c");
  ASSERT_TRUE(a && b && c);
  EXPECT_EQ(f.find_tensor("missing"), nullptr);
  EXPECT_EQ(a->ne, (std::vector<int64_t>{8, 2}));
  EXPECT_EQ(a->size, 64u);
  EXPECT_EQ(a->n_rows(), 2);
  EXPECT_EQ(b->type, quant::GgmlType::kQ8_0);
  EXPECT_EQ(b->size, 68u);  // 2 blocks x 34 bytes
  EXPECT_EQ(c->type, quant::GgmlType::kI32);
  EXPECT_EQ(c->offset, 160u);
  // The data section is filled with byte i*7+1; tensor c's first byte is data byte 160.
  EXPECT_EQ(f.tensor_data(*c)[0], static_cast<uint8_t>(160 * 7 + 1));
  EXPECT_EQ(f.tensor_data(*c).size(), 16u);
}

TEST(GgufReader, RejectsEveryCorruptVariantWithOneLineError) {
  std::vector<testing::CorruptCase> cases = corrupt_cases(/*all_truncations=*/true);
  ASSERT_GT(cases.size(), 300u);
  for (const testing::CorruptCase& c : cases) {
    SCOPED_TRACE(c.name);
    try {
      GgufFile::parse(c.bytes, c.name);
      ADD_FAILURE() << "accepted a corrupt file";
    } catch (const GgufError& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find(c.expect), std::string::npos) << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << "error must be one line";
      EXPECT_EQ(msg.rfind(c.name + ": ", 0), 0u) << "error must name the file: " << msg;
      EXPECT_NE(msg.find("[at byte "), std::string::npos) << msg;
    }
  }
}

TEST(GgufReader, OpensFilesAndReportsMissingOnes) {
  EXPECT_THROW(GgufFile::open("/nonexistent/model.gguf"), GgufError);
  EXPECT_THROW(GgufFile::open("/"), GgufError);
}

}  // namespace
}  // namespace magnetar::gguf
