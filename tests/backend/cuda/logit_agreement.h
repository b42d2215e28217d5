// What the GPU tests compare CUDA logits with the CPU's by: the tiny models they run on (the files
// tests/gpu/run.sh synthesizes, or the test's own), the logits of every position of a prompt fed in
// chunks, and the per-position agreement of two logit arrays — relative difference, top-1 and KL.
// One definition for every test file that makes such comparisons, so that their bounds mean the
// same thing.
#pragma once

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "tiny_model.h"

namespace magnetar::gpu {

// The tiny model of `types` (q2, q4 or f32): MAGNETAR_TINY_<TYPES> when set, else one synthesized
// into the test's scratch directory.
inline std::filesystem::path tiny_model_path(const std::string& types) {
  std::string upper = types;
  for (char& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  const std::string var = "MAGNETAR_TINY_" + upper;
  if (const char* env = std::getenv(var.c_str()); env != nullptr && *env != '\0') return env;
  return magnetar::testing::tiny_model(types, 7, false);
}

// Logits of every position of `tokens`, fed in chunks of `chunk` to `sequence` (a new one of `b`
// when null).
inline std::vector<float> chunked_logits(backend::Backend& b, std::span<const int32_t> tokens,
                                         int64_t chunk, backend::Sequence* sequence = nullptr) {
  std::unique_ptr<backend::Sequence> own;
  if (sequence == nullptr) {
    own = b.new_sequence();
    sequence = own.get();
  }
  std::vector<float> logits;
  const int64_t T = static_cast<int64_t>(tokens.size());
  for (int64_t i = 0; i < T; i += chunk) {
    backend::ForwardItem item;
    item.sequence = sequence;
    item.tokens = tokens.subspan(i, std::min(chunk, T - i));
    item.all_logits = true;
    b.forward(std::span(&item, 1));
    logits.insert(logits.end(), item.logits.begin(), item.logits.end());
  }
  return logits;
}

// Per-position agreement of logits a with the reference b.
struct Agreement {
  std::vector<double> relative;  // max|a − b| / max|b| per position
  double top1 = 0;               // share of positions with the same argmax
  double mean_kl = 0;            // mean KL(softmax(b) ‖ softmax(a)), nats

  // The element at q · (n − 1) of the sorted relative differences.
  double quantile(double q) const {
    std::vector<double> r = relative;
    std::sort(r.begin(), r.end());
    return r[static_cast<size_t>(q * (r.size() - 1))];
  }
  // The upper median: the element at n / 2 of the sorted relative differences.
  double median() const {
    std::vector<double> r = relative;
    std::sort(r.begin(), r.end());
    return r[r.size() / 2];
  }
  double share_within(double bound) const {
    return double(std::count_if(relative.begin(), relative.end(),
                                [&](double r) { return r <= bound; })) /
           relative.size();
  }
};

inline Agreement agreement(const std::vector<float>& a, const std::vector<float>& b, int64_t V) {
  Agreement g;
  const size_t rows = b.size() / V;
  for (size_t row = 0; row < rows; ++row) {
    const float* x = a.data() + row * V;
    const float* y = b.data() + row * V;
    double diff = 0, mag = 0, mx = -INFINITY, my = -INFINITY;
    for (int64_t i = 0; i < V; ++i) {
      diff = std::max(diff, std::abs(double(x[i]) - y[i]));
      mag = std::max(mag, std::abs(double(y[i])));
      mx = std::max(mx, double(x[i]));
      my = std::max(my, double(y[i]));
    }
    g.relative.push_back(diff / mag);
    g.top1 += std::max_element(x, x + V) - x == std::max_element(y, y + V) - y;
    double sx = 0, sy = 0;
    for (int64_t i = 0; i < V; ++i) {
      sx += std::exp(x[i] - mx);
      sy += std::exp(y[i] - my);
    }
    double kl = 0;
    for (int64_t i = 0; i < V; ++i) {
      const double ly = y[i] - my - std::log(sy), lx = x[i] - mx - std::log(sx);
      kl += std::exp(ly) * (ly - lx);
    }
    g.mean_kl += kl;
  }
  g.top1 /= rows;
  g.mean_kl /= rows;
  return g;
}

}  // namespace magnetar::gpu
