// IQ2_XXS encoder (shared/spec/gguf.md §4.6, §4.9).
//
// Each group of 8 weights is coded as a sign pattern (7 stored bits, even parity) times one of 256
// magnitude patterns with levels {1, 3, 5}, and each 32-weight group carries a 4-bit scale. The
// encoder searches, per 32-group, a small range of scales; for each it rounds every 8-tuple of
// magnitudes to the nearest levels and, when that tuple is not one of the 256 grid points, snaps
// it to the best of its nearest grid points under the importance-weighted error.
#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <vector>

#include "quant/codecs.h"
#include "quant/encode_helpers.h"
#include "quant/fp16.h"
#include "quant/iq2xxs_tables.h"

namespace magnetar::quant::detail {
namespace {

// An 8-tuple of levels l_i in {0, 1, 2} packed as 2-bit fields (bits 2i..2i+1): the form used by
// kIq2xxsKgrid. The largest key is 0xAAAA = 43690.
constexpr int kKeyCount = 43692;

// Read-only search structures derived from kIq2xxsKgrid, shared by all encoder calls.
class GridSearch {
 public:
  GridSearch() : slot_(kKeyCount, kUnreachable) {
    for (int g = 0; g < 256; ++g) {
      for (int i = 0; i < 8; ++i) {
        odd_[g][i] = static_cast<uint8_t>(2 * level(kIq2xxsKgrid[g], i) + 1);
      }
      slot_[kIq2xxsKgrid[g]] = g;
    }
    // Every tuple of levels in {0, 1, 2}^8 that is not a grid point gets a candidate list.
    for (int t = 0; t < 6561; ++t) {
      int key = 0;
      for (int i = 0, rest = t; i < 8; ++i, rest /= 3) key |= (rest % 3) << (2 * i);
      if (slot_[key] == kUnreachable) add_neighbours(key);
    }
  }

  // The grid index for a tuple of odd levels q_i = 2 l_i + 1 that should approximate xval / scale:
  // the tuple itself when it is a grid point, otherwise the candidate minimising
  // sum waux_i * (scale * q_i - xval_i)^2 (first candidate on ties).
  int snap(const uint8_t* levels, const float* xval, const float* waux, float scale) const {
    int key = 0;
    for (int i = 0; i < 8; ++i) key |= levels[i] << (2 * i);
    const int slot = slot_[key];
    if (slot >= 0) return slot;
    const uint16_t* list = &neighbours_[-slot - 1];
    int best_grid = list[1];
    float best_d2 = FLT_MAX;
    for (int c = 1; c <= list[0]; ++c) {
      const uint8_t* q = odd_[list[c]];
      float d2 = 0;
      for (int i = 0; i < 8; ++i) {
        const float diff = scale * q[i] - xval[i];
        d2 += waux[i] * diff * diff;
      }
      if (d2 < best_d2) {
        best_d2 = d2;
        best_grid = list[c];
      }
    }
    return best_grid;
  }

  // The odd levels {1, 3, 5} of grid point g.
  const uint8_t* odd_levels(int g) const { return odd_[g]; }

 private:
  // slot_ of keys that are never looked up (tuples containing the unused level 3).
  static constexpr int kUnreachable = -0x7fffffff;

  static int level(int key, int i) { return (key >> (2 * i)) & 3; }

  // Candidates for an off-grid tuple: the grid points at the two smallest distinct squared
  // distances, ordered by (distance, index). Stored as a count followed by the indices; slot_
  // holds -(offset + 1) to tell lists from grid indices.
  void add_neighbours(int key) {
    int dist[256];
    for (int g = 0; g < 256; ++g) {
      dist[g] = 0;
      for (int i = 0; i < 8; ++i) {
        const int diff = 2 * level(key, i) + 1 - odd_[g][i];
        dist[g] += diff * diff;
      }
    }
    int order[256];
    for (int g = 0; g < 256; ++g) order[g] = g;
    std::stable_sort(order, order + 256, [&](int a, int b) { return dist[a] < dist[b]; });
    const int nearest = dist[order[0]];
    int second = nearest;
    for (int g : order) {
      if (dist[g] > nearest) {
        second = dist[g];
        break;
      }
    }
    int count = 0;
    while (count < 256 && dist[order[count]] <= second) ++count;
    slot_[key] = -static_cast<int>(neighbours_.size()) - 1;
    neighbours_.push_back(static_cast<uint16_t>(count));
    neighbours_.insert(neighbours_.end(), order, order + count);
  }

  std::vector<int> slot_;  // by key: grid index (>= 0) or -(offset of candidate list + 1)
  std::vector<uint16_t> neighbours_;
  uint8_t odd_[256][8];
};

const GridSearch& grid_search() {
  static const GridSearch search;  // built once; C++ guarantees thread-safe initialisation
  return search;
}

// Rounds xval / scale (given id = 1 / scale) to levels and snaps each 8-tuple to the grid.
void snap_group(const GridSearch& search, const float* xval, const float* waux, float id,
                float scale, int grid[4]) {
  for (int k = 0; k < 4; ++k) {
    uint8_t levels[8];
    for (int i = 0; i < 8; ++i) {
      levels[i] =
          static_cast<uint8_t>(std::clamp(nearest_int(0.5f * (id * xval[8 * k + i] - 1)), 0, 2));
    }
    grid[k] = search.snap(levels, xval + 8 * k, waux + 8 * k, scale);
  }
}

// Weighted least-squares terms of xval ~ scale * q for the chosen grid points.
void fit_terms(const GridSearch& search, const float* xval, const float* w, const int grid[4],
               float* sumqx, float* sumq2) {
  *sumqx = 0;
  *sumq2 = 0;
  for (int k = 0; k < 4; ++k) {
    const uint8_t* q = search.odd_levels(grid[k]);
    for (int i = 0; i < 8; ++i) {
      const float wi = w[8 * k + i];
      *sumqx += wi * xval[8 * k + i] * q[i];
      *sumq2 += wi * q[i] * q[i];
    }
  }
}

// Encodes one 32-group: writes its four grid indices and its sign word (without the group scale)
// and returns the group's float scale (>= 0).
float encode_group(const GridSearch& search, const float* x, const float* qw, float sigma2,
                   uint8_t grid_bytes[4], uint32_t* signs_word) {
  float w[32];
  float waux[32];
  float xval[32];
  uint32_t signs[4];
  for (int i = 0; i < 32; ++i) {
    w[i] = qw[i] * std::sqrt(sigma2 + x[i] * x[i]);
    waux[i] = std::sqrt(w[i]);
  }
  for (int k = 0; k < 4; ++k) {
    const float* xk = x + 8 * k;
    uint32_t s = 0;
    for (int i = 0; i < 8; ++i) {
      xval[8 * k + i] = std::fabs(xk[i]);
      if (xk[i] < 0) s |= 1u << i;
    }
    // Only 7 sign bits are stored and the 8th is their parity, so an odd count of negatives
    // cannot be represented: flip the sign of the element where that costs least (w * x^2).
    if (std::popcount(s) & 1) {
      int imin = 0;
      float min = w[8 * k] * xk[0] * xk[0];
      for (int i = 1; i < 8; ++i) {
        const float cost = w[8 * k + i] * xk[i] * xk[i];
        if (cost < min) {
          min = cost;
          imin = i;
        }
      }
      xval[8 * k + imin] = -xval[8 * k + imin];
      s ^= 1u << imin;
    }
    signs[k] = s & 127;
  }

  std::memset(grid_bytes, 0, 4);
  *signs_word = 0;
  float max = xval[0];
  for (int i = 1; i < 32; ++i) max = std::max(max, xval[i]);
  if (max < 1e-15f) return 0;

  uint8_t unused_codes[32];
  float scale = make_qp(32, 4, xval, w, unused_codes);
  const float eff_max = 3 * scale;
  if (eff_max <= 0) return 0;

  int grid[4] = {0, 0, 0, 0};
  float best = 0;
  for (int is = -6; is <= 6; ++is) {
    const float id = (5 + 0.1f * is) / eff_max;
    int trial[4];
    snap_group(search, xval, waux, id, 1 / id, trial);
    float sumqx;
    float sumq2;
    fit_terms(search, xval, w, trial, &sumqx, &sumq2);
    if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
      scale = sumqx / sumq2;
      best = scale * sumqx;
      std::copy(trial, trial + 4, grid);
    }
  }
  if (scale > 0) {  // one more rounding pass at the chosen scale, then refit the scale
    snap_group(search, xval, waux, 1 / scale, scale, grid);
    float sumqx;
    float sumq2;
    fit_terms(search, xval, w, grid, &sumqx, &sumq2);
    if (sumq2 > 0) scale = sumqx / sumq2;
  }
  if (scale < 0) {  // a negative fit is a positive one with every sign flipped
    scale = -scale;
    for (uint32_t& s : signs) s = ~s & 127;
  }
  for (int k = 0; k < 4; ++k) {
    grid_bytes[k] = static_cast<uint8_t>(grid[k]);
    *signs_word |= signs[k] << (7 * k);
  }
  return scale;
}

void encode_block(const GridSearch& search, const float* x, const float* qw, BlockIQ2_XXS& y) {
  float sum_x2 = 0;
  for (int i = 0; i < 256; ++i) sum_x2 += x[i] * x[i];
  const float sigma2 = sum_x2 / 256;

  float scales[8];
  uint32_t words[8];
  float max_scale = 0;
  for (int g = 0; g < 8; ++g) {
    scales[g] = encode_group(search, x + 32 * g, qw + 32 * g, sigma2, y.qs + 8 * g, &words[g]);
    max_scale = std::max(max_scale, scales[g]);
  }
  if (max_scale == 0) {
    y.d = f32_to_f16(0.0f);
    std::memset(y.qs, 0, sizeof(y.qs));
    return;
  }
  // Group scales are stored as odd multiples of d, scale_g ~ d * (2 s_g + 1) with s_g in [0, 15],
  // so d = max / 31 lets the largest group use s = 15. (The decoder's extra 1/8 undoes the grid
  // magnitudes 8, 25, 43, which stand for the levels 1, 3, 5.)
  const float d = max_scale / 31;
  y.d = f32_to_f16(d);
  const float id = 1 / d;
  for (int g = 0; g < 8; ++g) {
    const int s = std::clamp(nearest_int(0.5f * (id * scales[g] - 1)), 0, 15);
    const uint32_t word = words[g] | static_cast<uint32_t>(s) << 28;
    std::memcpy(y.qs + 8 * g + 4, &word, 4);
  }
}

}  // namespace

void quantize_iq2_xxs(const float* x, BlockIQ2_XXS* y, int64_t nb, const float* qw) {
  const GridSearch& search = grid_search();
  for (int64_t b = 0; b < nb; ++b) encode_block(search, x + 256 * b, qw + 256 * b, y[b]);
}

}  // namespace magnetar::quant::detail
