// The MTP block on the CUDA backend against the CPU reference, on the tiny q2 and f32 models with
// their MTP block: draft logits of every position close to the CPU's across chunkings, the same
// rows whatever the chunking (a position's committed row replaces its draft), and the MTP state
// (window ring, pending final state) moving between the backends exactly. Needs a CUDA GPU.
//
// Plain numerics only for the logit bound: the MTP block runs the same kernels as a main layer,
// so the plain-numerics argument of cuda_backend_test.cc holds (last-bit differences of a few
// transcendental functions, ~1e-7 relative, bound 1e-5); under the official numerics a rounding
// event can move a whole position (see there), which a short sequence may or may not meet.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/cuda_backend.h"
#include "tiny_model.h"

namespace magnetar::gpu {
namespace {

constexpr double kPlainTolerance = 1e-5;

// Main and MTP logits of every position when `tokens` are fed in chunks of `chunk`. A position's
// MTP row is the last one a call returned for it: the committed row replaces the draft.
struct FedLogits {
  std::vector<float> main;
  std::map<int64_t, std::vector<float>> mtp;
};

FedLogits feed(backend::Backend& b, backend::Sequence& s, const std::vector<int32_t>& tokens,
               int64_t begin, int64_t chunk) {
  FedLogits r;
  const int64_t V = b.config().n_vocab, T = static_cast<int64_t>(tokens.size());
  for (int64_t i = begin; i < T; i += chunk) {
    backend::ForwardItem item;
    item.sequence = &s;
    item.tokens = std::span<const int32_t>(tokens).subspan(i, std::min(chunk, T - i));
    item.all_logits = true;
    item.mtp_logits = true;
    b.forward(std::span(&item, 1));
    r.main.insert(r.main.end(), item.logits.begin(), item.logits.end());
    for (size_t row = 0; row * V < item.mtp.size(); ++row) {
      r.mtp[item.mtp_first_position + static_cast<int64_t>(row)].assign(
          item.mtp.begin() + row * V, item.mtp.begin() + (row + 1) * V);
    }
  }
  return r;
}

double relative_difference(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0, mag = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    diff = std::max(diff, std::abs(double(a[i]) - b[i]));
    mag = std::max(mag, std::abs(double(b[i])));
  }
  return diff / mag;
}

class CudaMtpTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (!cuda_backend_usable()) GTEST_SKIP() << "no usable CUDA device";
    file_ = std::make_unique<gguf::GgufFile>(
        gguf::GgufFile::open(testing::tiny_model(GetParam(), 11, /*with_mtp=*/true)));
    CudaOptions g;
    g.context = 1024;
    g.official_numerics = false;
    g.progress = false;
    g.reference_order = true;  // the CPU's summation order, for the plain-numerics bound
    gpu_ = std::make_unique<CudaBackend>(*file_, g);
    cpu::CpuOptions c;
    c.official_numerics = false;
    cpu_ = std::make_unique<cpu::CpuBackend>(*file_, c);
  }

  std::unique_ptr<gguf::GgufFile> file_;
  std::unique_ptr<CudaBackend> gpu_;
  std::unique_ptr<cpu::CpuBackend> cpu_;
};

// 40 positions: past the MTP block's 8-row window, so its ring wraps.
TEST_P(CudaMtpTest, DraftLogitsCloseToCpuAcrossChunkings) {
  ASSERT_TRUE(gpu_->has_mtp());
  const std::vector<int32_t> tokens = testing::random_tokens(40, 5);
  auto cs = cpu_->new_mtp_sequence();
  const FedLogits want = feed(*cpu_, *cs, tokens, 0, 40);
  ASSERT_EQ(want.mtp.size(), tokens.size());
  for (int64_t chunk : {int64_t{1}, int64_t{3}, int64_t{40}}) {
    SCOPED_TRACE("chunk " + std::to_string(chunk));
    auto gs = gpu_->new_mtp_sequence();
    const FedLogits got = feed(*gpu_, *gs, tokens, 0, chunk);
    EXPECT_LT(relative_difference(got.main, want.main), kPlainTolerance);
    ASSERT_EQ(got.mtp.size(), want.mtp.size());
    for (const auto& [position, row] : want.mtp) {
      EXPECT_LT(relative_difference(got.mtp.at(position), row), kPlainTolerance)
          << "position " << position;
    }
  }
}

// A sequence without MTP state refuses MTP logits and changes nothing.
TEST_P(CudaMtpTest, MtpLogitsNeedAnMtpSequence) {
  auto s = gpu_->new_sequence();
  const std::vector<int32_t> tokens = testing::random_tokens(3, 6);
  backend::ForwardItem item;
  item.sequence = s.get();
  item.tokens = tokens;
  item.mtp_logits = true;
  EXPECT_THROW(gpu_->forward(std::span(&item, 1)), std::invalid_argument);
  EXPECT_EQ(s->position(), 0);
}

// The MTP state exports exactly and continues on the other backend as if it had never moved:
// CUDA → CPU and CPU → CUDA after 21 positions (a pending final state, a wrapped ring).
TEST_P(CudaMtpTest, StateMovesBetweenBackends) {
  const std::vector<int32_t> tokens = testing::random_tokens(30, 7);
  const std::vector<int32_t> head(tokens.begin(), tokens.begin() + 21);

  auto gs = gpu_->new_mtp_sequence();
  feed(*gpu_, *gs, head, 0, 7);
  const cpu::SequenceState exported = gs->export_state();
  ASSERT_TRUE(exported.mtp.has_value());
  EXPECT_FALSE(exported.mtp_pending_hidden.empty());

  auto cs = cpu_->new_mtp_sequence();
  feed(*cpu_, *cs, head, 0, 21);
  const cpu::SequenceState reference = cs->export_state();
  EXPECT_LT(relative_difference(exported.mtp->window, reference.mtp->window), kPlainTolerance);
  EXPECT_LT(relative_difference(exported.mtp_pending_hidden, reference.mtp_pending_hidden),
            kPlainTolerance);

  // Round trip through the CUDA backend is exact.
  auto back = gpu_->import_state(exported);
  const cpu::SequenceState again = back->export_state();
  EXPECT_EQ(again.mtp->window, exported.mtp->window);
  EXPECT_EQ(again.mtp_pending_hidden, exported.mtp_pending_hidden);

  // GPU state continued on the CPU, and the CPU's continued on the GPU: both give the CPU's
  // own continuation.
  auto on_cpu = cpu_->import_state(exported);
  auto on_gpu = gpu_->import_state(reference);
  const FedLogits want = feed(*cpu_, *cs, tokens, 21, 9);
  const FedLogits from_gpu = feed(*cpu_, *on_cpu, tokens, 21, 9);
  const FedLogits from_cpu = feed(*gpu_, *on_gpu, tokens, 21, 9);
  for (const auto& [position, row] : want.mtp) {
    EXPECT_LT(relative_difference(from_gpu.mtp.at(position), row), kPlainTolerance);
    EXPECT_LT(relative_difference(from_cpu.mtp.at(position), row), kPlainTolerance);
  }
}

INSTANTIATE_TEST_SUITE_P(TinyModels, CudaMtpTest, ::testing::Values("f32", "q2"));

}  // namespace
}  // namespace magnetar::gpu
