// The CPU model behind the backend interface: the MTP draft logits a backend::ForwardItem returns
// are cpu::CpuModel's own, and the requests the interface refuses (MTP logits of a plain
// sequence, an MTP sequence of a model without the block) change nothing.
#include "backend/cpu/cpu_backend.h"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "tiny_model.h"

namespace magnetar::cpu {
namespace {

TEST(CpuBackendTest, MtpLogitsAreTheModelsOwn) {
  const gguf::GgufFile file = gguf::GgufFile::open(testing::tiny_model("f32", 7, true));
  CpuBackend backend(file, {});
  CpuModel model(file, {});
  ASSERT_TRUE(backend.has_mtp());
  const std::vector<int32_t> tokens = testing::random_tokens(12, 3);

  auto sequence = backend.new_mtp_sequence();
  SequenceState state = model.new_sequence(true);
  for (size_t begin : {size_t{0}, size_t{5}}) {
    const auto chunk = std::span<const int32_t>(tokens).subspan(begin, begin == 0 ? 5 : 7);
    backend::ForwardItem item;
    item.sequence = sequence.get();
    item.tokens = chunk;
    item.mtp_logits = true;
    backend.forward(std::span(&item, 1));
    ForwardItem direct;
    direct.state = &state;
    direct.tokens = chunk;
    direct.mtp_logits = true;
    model.forward(std::span(&direct, 1));
    EXPECT_EQ(item.logits, direct.logits);
    EXPECT_EQ(item.mtp, direct.mtp);
    EXPECT_EQ(item.mtp_first_position, direct.mtp_first_position);
    EXPECT_EQ(item.mtp.size(), (begin == 0 ? 5u : 8u) * model.config().n_vocab);
  }
}

TEST(CpuBackendTest, RefusedMtpRequestsChangeNothing) {
  const gguf::GgufFile with = gguf::GgufFile::open(testing::tiny_model("f32", 7, true));
  CpuBackend backend(with, {});
  auto plain = backend.new_sequence();
  const std::vector<int32_t> tokens = testing::random_tokens(4, 4);
  backend::ForwardItem item;
  item.sequence = plain.get();
  item.tokens = tokens;
  item.mtp_logits = true;
  EXPECT_THROW(backend.forward(std::span(&item, 1)), std::invalid_argument);
  EXPECT_EQ(plain->position(), 0);

  const gguf::GgufFile without = gguf::GgufFile::open(testing::tiny_model("f32", 7, false));
  CpuBackend no_mtp(without, {});
  EXPECT_FALSE(no_mtp.has_mtp());
  EXPECT_THROW(no_mtp.new_mtp_sequence(), std::invalid_argument);
}

}  // namespace
}  // namespace magnetar::cpu
