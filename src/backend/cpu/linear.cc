#include "backend/cpu/linear.h"

#include <cstring>
#include <vector>

#include "backend/cpu/numerics.h"

namespace magnetar::cpu {
namespace {

// Four independent partial sums let the compiler vectorize without -ffast-math.
float dot(const float* a, const float* b, int64_t n) {
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += a[i] * b[i];
    s1 += a[i + 1] * b[i + 1];
    s2 += a[i + 2] * b[i + 2];
    s3 += a[i + 3] * b[i + 3];
  }
  for (; i < n; ++i) s0 += a[i] * b[i];
  return (s0 + s1) + (s2 + s3);
}

}  // namespace

void linear(ThreadPool& pool, const model::WeightMatrix& w, const float* x, int64_t n_tokens,
            float* y) {
  const int64_t rows = w.rows, cols = w.cols;
  pool.parallel_for(
      rows,
      [&](int64_t begin, int64_t end) {
        std::vector<float> row(static_cast<size_t>(cols));
        for (int64_t n = begin; n < end; ++n) {
          model::decode_row(w, n, row.data());
          for (int64_t t = 0; t < n_tokens; ++t)
            y[t * rows + n] = dot(row.data(), x + t * cols, cols);
        }
      },
      /*grain=*/16);
}

model::WeightMatrix row_slice(const model::WeightMatrix& w, int64_t first, int64_t count) {
  model::WeightMatrix m = w;
  m.data = w.row(first);
  m.rows = count;
  return m;
}

void act_quant_fp8(const float* x, int64_t n_tokens, int64_t cols, bool enabled, float* out) {
  if (out != x) std::memcpy(out, x, static_cast<size_t>(n_tokens * cols) * sizeof(float));
  if (!enabled) return;
  for (int64_t t = 0; t < n_tokens; ++t) fp8_simulate(out + t * cols, cols, 128);
}

}  // namespace magnetar::cpu
