// The 8-bit absmax encoders: Q8_0 weights and the Q8_K / Q8_0F activation formats.
#include <algorithm>
#include <cmath>

#include "quant/codecs.h"
#include "quant/encode_helpers.h"
#include "quant/fp16.h"

namespace magnetar::quant::detail {
namespace {

float abs_max(const float* x, int n) {
  float amax = 0;
  for (int i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  return amax;
}

}  // namespace

void quantize_q8_0(const float* x, BlockQ8_0* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, x += 32) {
    const float d = abs_max(x, 32) / 127;
    const float id = d != 0 ? 1 / d : 0;  // the unrounded d, not its f16 image, sets the codes
    y[b].d = f32_to_f16(d);
    for (int i = 0; i < 32; ++i) y[b].qs[i] = static_cast<int8_t>(std::round(x[i] * id));
  }
}

void quantize_q8_0f(const float* x, BlockQ8_0F* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, x += 32) {
    const float d = abs_max(x, 32) / 127;
    const float id = d != 0 ? 1 / d : 0;
    y[b].d = d;
    for (int i = 0; i < 32; ++i) y[b].qs[i] = static_cast<int8_t>(std::lrint(x[i] * id));
  }
}

void quantize_q8_k(const float* x, BlockQ8_K* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, x += 256) {
    // The scale comes from the signed element of largest magnitude (first one on ties), so that
    // element maps exactly to -127.
    float amax = 0;
    float max = 0;
    for (int i = 0; i < 256; ++i) {
      if (std::fabs(x[i]) > amax) {
        amax = std::fabs(x[i]);
        max = x[i];
      }
    }
    BlockQ8_K& out = y[b];
    if (amax == 0) {
      out = BlockQ8_K{};  // d = 0, codes and sums 0
      continue;
    }
    const float iscale = -127.0f / max;
    for (int i = 0; i < 256; ++i) {
      out.qs[i] = static_cast<int8_t>(std::clamp(nearest_int(iscale * x[i]), -128, 127));
    }
    for (int j = 0; j < 16; ++j) {
      int sum = 0;
      for (int i = 0; i < 16; ++i) sum += out.qs[16 * j + i];
      out.bsums[j] = static_cast<int16_t>(sum);
    }
    out.d = 1 / iscale;
  }
}

}  // namespace magnetar::quant::detail
