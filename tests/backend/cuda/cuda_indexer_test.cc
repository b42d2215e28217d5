// The indexer's fast scoring kernel (reference_order() false) against the reference-order kernel:
// the same score bits and therefore the same choice, on random FP4 rows and queries, for queries
// that see fewer rows than top_k, exactly top_k, and more (2K and 8K contexts). The choice is also
// checked for what it must be whatever the kernel: distinct rows, in decreasing score order, none
// left out that scores higher than the last chosen.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <set>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/device_array.h"
#include "backend/cuda/indexer.cuh"
#include "backend/cuda/linear.cuh"
#include "backend/cuda/row_codec.h"

namespace magnetar::gpu {
namespace {

struct Choice {
  std::vector<int32_t> selected, count;
  std::vector<float> scores;
};

Choice choose(const IndexerQuery& base, DeviceArray<float>& scores, bool reference) {
  IndexerQuery q = base;
  q.scores = scores.data();
  DeviceArray<int32_t> selected(q.n_tokens * q.top_k), count(q.n_tokens);
  const bool previous = reference_order();
  set_reference_order(reference);
  indexer_select_cuda(q, selected.data(), count.data(), nullptr);
  set_reference_order(previous);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  return {selected.download(), count.download(), scores.download()};
}

void check(int heads, int dim, int top_k, int64_t first, int64_t n_tokens, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  const RowCodec codec = indexer_row_codec(dim, /*official=*/true);
  const int64_t rows = (first + n_tokens) / 4;
  std::vector<uint8_t> row_bytes(rows * codec.row_bytes());
  std::vector<float> values(dim);
  for (int64_t i = 0; i < rows; ++i) {
    for (float& v : values) v = unit(rng);
    codec.encode(values.data(), row_bytes.data() + i * codec.row_bytes());
  }
  std::vector<float> q(n_tokens * heads * dim), w(n_tokens * heads);
  for (float& x : q) x = unit(rng);
  for (float& x : w) x = unit(rng);
  DeviceArray<uint8_t> d_rows(row_bytes);
  DeviceArray<float> d_q(q), d_w(w);
  DeviceArray<float> scores_ref(n_tokens * rows), scores_fast(n_tokens * rows);
  IndexerQuery a;
  a.q = d_q.data();
  a.weights = d_w.data();
  a.rows = d_rows.data();
  a.codec = codec;
  a.heads = heads;
  a.dim = dim;
  a.top_k = top_k;
  a.weight_scale = 1.0f / std::sqrt(static_cast<float>(dim * heads));
  a.first = first;
  a.n_tokens = n_tokens;
  a.max_rows = rows;
  const Choice ref = choose(a, scores_ref, true);
  const Choice fast = choose(a, scores_fast, false);
  EXPECT_EQ(fast.count, ref.count);
  for (int64_t t = 0; t < n_tokens; ++t) {
    SCOPED_TRACE(t);
    const int64_t visible = (first + t + 1) / 4;
    const int c = ref.count[t];
    ASSERT_EQ(c, std::min<int64_t>(visible, top_k));
    const int32_t* rs = ref.selected.data() + t * top_k;
    const int32_t* fs = fast.selected.data() + t * top_k;
    EXPECT_TRUE(std::equal(rs, rs + c, fs));
    if (visible <= top_k) continue;
    const float* sr = ref.scores.data() + t * rows;
    const float* sf = fast.scores.data() + t * rows;
    EXPECT_EQ(std::memcmp(sr, sf, visible * sizeof(float)), 0) << "score bits differ";
    // The choice itself: distinct, decreasing, and no unchosen row above the last chosen one.
    const std::set<int32_t> chosen(fs, fs + c);
    EXPECT_EQ(static_cast<int>(chosen.size()), c);
    for (int i = 1; i < c; ++i) EXPECT_GE(sf[fs[i - 1]], sf[fs[i]]);
    for (int64_t i = 0; i < visible; ++i) {
      if (!chosen.count(static_cast<int32_t>(i))) {
        EXPECT_LE(sf[i], sf[fs[c - 1]]);
      }
    }
  }
}

TEST(CudaIndexer, FastScoresAreTheReferenceBits) {
  if (!cuda_backend_usable()) GTEST_SKIP() << "no usable CUDA device";
  check(/*heads=*/64, /*dim=*/128, /*top_k=*/512, /*first=*/2040, /*n_tokens=*/16, 1);
  check(64, 128, 512, 8190, 3, 2);
  check(16, 128, 8, 140, 10, 3);  // the tiny model's shape
}

}  // namespace
}  // namespace magnetar::gpu
