// The per-instruction-set tables of dot-product kernels behind vec_dot (quant.h).
//
// Internal to src/quant. Each kernel takes n weights in their file format and n activations in the
// format activation_format() pairs with that weight type, and assumes n is a whole number of
// blocks. The integer kernels accumulate exact integer sums per block (or per sub-block scale) and
// apply the float scales once per block, as ds4's CPU path does (shared/spec/gguf.md §4.8), so the
// two instruction sets differ only in the order of float additions.
#pragma once

#include "quant/quant.h"

namespace magnetar::quant::detail {

struct DotKernels {
  DotKernel f32;      // f32 weights . f32 activations
  DotKernel f16;      // f16 weights . f32 activations
  DotKernel bf16;     // bf16 weights . f32 activations
  DotKernel q8_0;     // BlockQ8_0 . BlockQ8_0F
  DotKernel q2_k;     // BlockQ2_K . BlockQ8_K
  DotKernel q4_k;     // BlockQ4_K . BlockQ8_K
  DotKernel iq2_xxs;  // BlockIQ2_XXS . BlockQ8_K
};

extern const DotKernels kPortableDot;

#if defined(MAGNETAR_HAVE_AVX2_KERNELS)
// Compiled with -mavx2 -mfma -mf16c: only usable when cpu_isa_supported(CpuIsa::kAvx2).
extern const DotKernels kAvx2Dot;
#endif

}  // namespace magnetar::quant::detail
