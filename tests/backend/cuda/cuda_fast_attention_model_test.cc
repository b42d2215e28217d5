// The whole tiny model on the fast kernels (CudaOptions::reference_order false: the fast sparse
// attention of sparse_attention.cu, the fast GEMVs), decoding a prompt token by token, against the
// CPU reference. The tiny model's heads (128 dims, 64 RoPE dims, FP8 rows) take the fast attention
// kernel, and 150 positions pass its 8-row window, the indexer's choice and a ratio-128 row.
//
// The bound. The fast attention is within ~1e-6 of the reference order per output
// (cuda_sparse_attention_test.cc), far below the GEMVs' reordering (a few ulps of each product's
// Σ|w·x|) and the activations' FP8/FP4 rounding events; so the bounds are those of the other
// fast-path comparisons (cuda_prefill_model_test.cc explains them): plain numerics median
// max|gpu − cpu| / max|cpu| ≤ 1e-2, top-1 agreement ≥ 90%, mean KL ≤ 1e-2 nats; official numerics
// top-1 ≥ 80%, mean KL ≤ 0.05. A wrong row, sink or position fails them by orders of magnitude.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/cuda_backend.h"
#include "logit_agreement.h"
#include "tiny_model.h"

namespace magnetar::gpu {
namespace {

using magnetar::testing::random_tokens;

TEST(CudaFastAttentionModel, DecodeCloseToCpu) {
  if (!cuda_backend_usable()) GTEST_SKIP() << "no usable CUDA device";
  const std::vector<int32_t> tokens = random_tokens(150, 31);
  for (const std::string types : {"f32", "q2"}) {
    const gguf::GgufFile file = gguf::GgufFile::open(tiny_model_path(types));
    for (bool official : {false, true}) {
      SCOPED_TRACE(types + (official ? ", official" : ", plain"));
      CudaOptions o;
      o.context = 4096;
      o.official_numerics = official;
      o.progress = false;
      o.reference_order = false;
      CudaBackend g(file, o);
      cpu::CpuOptions co;
      co.official_numerics = official;
      cpu::CpuBackend c(file, co);
      const Agreement a = agreement(chunked_logits(g, tokens, 1), chunked_logits(c, tokens, 150),
                                    g.config().n_vocab);
      std::cout << "[ fast     ] " << types << (official ? " official" : " plain")
                << ", decode vs CPU over 150 positions: median " << a.median() << ", top-1 "
                << a.top1 << ", mean KL " << a.mean_kl << "\n";
      if (official) {
        EXPECT_GE(a.top1, 0.8);
        EXPECT_LE(a.mean_kl, 5e-2);
      } else {
        EXPECT_LE(a.median(), 1e-2);
        EXPECT_GE(a.top1, 0.9);
        EXPECT_LE(a.mean_kl, 1e-2);
      }
    }
  }
}

}  // namespace
}  // namespace magnetar::gpu
