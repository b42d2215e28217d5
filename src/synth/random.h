// Small, fast, seedable random numbers for synthetic weights.
//
// Reproducibility matters more than statistical finesse here: a file written with the same seed
// must be byte-identical whatever the thread count, so every chunk of every tensor draws from its
// own stream derived from (seed, tensor name, chunk index). SplitMix64 is a good 64-bit mixer and
// a fast generator (one multiply-xorshift chain per 8 bytes).
#pragma once

#include <cmath>
#include <cstdint>
#include <string_view>

namespace magnetar::synth {

inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// FNV-1a, to turn a tensor name into a seed component.
inline uint64_t hash_name(std::string_view s) {
  uint64_t h = 0xCBF29CE484222325ULL;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001B3ULL;
  return h;
}

class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(mix64(seed)) {}
  Rng(uint64_t seed, uint64_t stream, uint64_t index)
      : state_(mix64(seed ^ mix64(stream ^ mix64(index + 0x9E3779B97F4A7C15ULL)))) {}

  uint64_t next() {
    state_ += 0x9E3779B97F4A7C15ULL;
    return mix64(state_);
  }
  // Uniform in [0, 1).
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  // Uniform integer in [0, n).
  uint64_t below(uint64_t n) { return static_cast<uint64_t>(uniform() * static_cast<double>(n)); }
  // Standard normal (Box-Muller; the second value is dropped to keep streams simple).
  double normal() {
    double u1 = 1.0 - uniform();  // (0, 1]
    double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

 private:
  uint64_t state_;
};

}  // namespace magnetar::synth
