#include "quant/encode_helpers.h"

#include <algorithm>
#include <cmath>

namespace magnetar::quant::detail {

float make_qkx(int n, int nmax, const float* x, const float* w, uint8_t* L, float* offset,
               uint8_t* scratch, float rmin, float rdelta, int nstep, bool use_mad) {
  float lo = x[0];
  float hi = x[0];
  float sum_w = w[0];
  float sum_wx = w[0] * x[0];
  for (int i = 1; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
    sum_w += w[i];
    sum_wx += w[i] * x[i];
  }
  // The offset only ever shifts values down: a block of positive numbers still starts at 0.
  if (lo > 0) lo = 0;
  if (hi == lo) {
    std::fill(L, L + n, 0);
    *offset = -lo;
    return 0.0f;
  }

  auto quantize_with = [&](float iscale, uint8_t* codes) {
    for (int i = 0; i < n; ++i) {
      codes[i] = static_cast<uint8_t>(std::clamp(nearest_int(iscale * (x[i] - lo)), 0, nmax));
    }
  };
  auto error_of = [&](float scale, float min, const uint8_t* codes) {
    float error = 0;
    for (int i = 0; i < n; ++i) {
      const float diff = scale * codes[i] + min - x[i];
      error += w[i] * (use_mad ? std::fabs(diff) : diff * diff);
    }
    return error;
  };

  // Baseline: spread [lo, hi] evenly over the nmax + 1 levels.
  const float range = hi - lo;
  float scale = 1 / (nmax / range);
  float min = lo;
  quantize_with(nmax / range, L);
  float best_error = error_of(scale, min, L);
  if (nstep < 1) {
    *offset = -min;
    return scale;
  }

  for (int is = 0; is <= nstep; ++is) {
    quantize_with((rmin + rdelta * is + nmax) / range, scratch);
    // Weighted least squares for x ~ a * code + b over this trial's codes.
    float sum_wl = 0;
    float sum_wl2 = 0;
    float sum_wlx = 0;
    for (int i = 0; i < n; ++i) {
      const float l = scratch[i];
      sum_wl += w[i] * l;
      sum_wl2 += w[i] * l * l;
      sum_wlx += w[i] * l * x[i];
    }
    const float det = sum_w * sum_wl2 - sum_wl * sum_wl;
    if (!(det > 0)) continue;
    float trial_scale = (sum_w * sum_wlx - sum_wx * sum_wl) / det;
    float trial_min = (sum_wl2 * sum_wx - sum_wl * sum_wlx) / det;
    if (trial_min > 0) {  // the format cannot add a positive offset: refit through the origin
      trial_min = 0;
      trial_scale = sum_wlx / sum_wl2;
    }
    const float error = error_of(trial_scale, trial_min, scratch);
    if (error < best_error) {
      std::copy(scratch, scratch + n, L);
      best_error = error;
      scale = trial_scale;
      min = trial_min;
    }
  }
  *offset = -min;
  return scale;
}

float make_qp(int n, int nmax, const float* x, const float* w, uint8_t* L) {
  float max = x[0];
  for (int i = 1; i < n; ++i) max = std::max(max, x[i]);
  if (max < 1e-15f) {
    std::fill(L, L + n, 0);
    return 0.0f;
  }

  // Trial codes are ints, but the codes kept in L are bytes: a negative rounding (possible when
  // IQ2_XXS hands in an element it negated to fix a sign parity) wraps when stored, and the steps
  // that read L back see the wrapped code. The reference encoder behaves the same way, and only
  // the returned scale (not these codes) is used in that case.
  auto weighted_mse = [&](float iscale, bool use_stored) {
    const float scale = 1 / iscale;
    float mse = 0;
    for (int i = 0; i < n; ++i) {
      const float l = use_stored ? L[i] : std::min(nmax, nearest_int(iscale * x[i]));
      const float diff = x[i] - scale * l;
      mse += w[i] * diff * diff;
    }
    return mse;
  };

  float iscale = nmax / max;
  for (int i = 0; i < n; ++i) L[i] = static_cast<uint8_t>(nearest_int(iscale * x[i]));
  float best_mse = weighted_mse(iscale, /*use_stored=*/true);
  for (int is = -4; is <= 4; ++is) {
    if (is == 0) continue;
    const float trial = (0.1f * is + nmax) / max;
    const float mse = weighted_mse(trial, /*use_stored=*/false);
    if (mse < best_mse) {
      best_mse = mse;
      iscale = trial;
    }
  }

  float sum_lx = 0;
  float sum_l2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = std::min(nmax, nearest_int(iscale * x[i]));
    L[i] = static_cast<uint8_t>(l);
    sum_lx += w[i] * x[i] * l;
    sum_l2 += w[i] * l * l;
  }
  // Coordinate descent on the codes: the optimal scale for fixed codes is sum_lx / sum_l2 and its
  // weighted error falls as sum_lx^2 / sum_l2 rises, so a move is kept when it raises that ratio.
  for (int pass = 0; pass < 5; ++pass) {
    bool changed = false;
    for (int i = 0; i < n; ++i) {
      float lx = sum_lx - w[i] * x[i] * L[i];
      float l2 = sum_l2 - w[i] * L[i] * L[i];
      if (!(lx > 0 && l2 > 0)) continue;
      const int new_l = std::min(nmax, nearest_int(x[i] * l2 / lx));
      if (new_l == L[i]) continue;
      lx += w[i] * x[i] * new_l;
      l2 += w[i] * new_l * new_l;
      if (lx * lx * sum_l2 > sum_lx * sum_lx * l2) {
        L[i] = static_cast<uint8_t>(new_l);
        sum_lx = lx;
        sum_l2 = l2;
        changed = true;
      }
    }
    if (!changed) break;
  }
  return sum_l2 > 0 ? sum_lx / sum_l2 : 0.0f;
}

}  // namespace magnetar::quant::detail
