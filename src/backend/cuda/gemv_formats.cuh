// The inner loops of the decode GEMV (gemv.cu): one struct per weight format, each computing one
// lane's share of a dot product from weight bytes staged in shared memory.
//
// The GEMV cuts every row into steps of 256 elements (kStepElems) and gives lane l of a warp the
// 8 consecutive elements [8l, 8l + 8) of each step, so that a warp's 32 lanes read 256 consecutive
// activations (two 16-byte loads each, fully coalesced) and every lane's elements sit inside one
// block of every format (Q8_0 blocks hold 32 elements, the K-quant and IQ2_XXS blocks 256, so a
// step is 8 Q8_0 blocks or one K-quant / IQ2_XXS block). A format only says where lane l's 8 codes
// and its block scales lie in the step's bytes and how to turn them into a partial sum.
//
// Arithmetic: fp32 throughout, explicit fused multiply-adds (__fmaf_rn, which -fmad=false leaves
// alone). Integer codes become floats exactly through the 2^23 trick (a byte b placed in the
// mantissa of 2^23 gives the float 2^23 + b; subtracting 2^23 leaves b) because the int-to-float
// conversion instruction runs at an eighth of the FMA rate. Each lane first sums code · x over its
// 8 elements and then scales by the block factor (Q8_0: d; IQ2_XXS: d·(0.5 + s)/4; K-quants:
// d·sc and dmin·m against Σx): the same products as the CPU's dequantized weights, which are exact
// in f32 (weight_decode.cuh), but rounded in another order, so results are not bit-identical to
// cpu::linear (linear.cuh explains the numerics).
//
// Format interface (all members static):
//   kType         the GGUF type
//   kStepBytes    bytes of one step (256 elements) of a row
//   kSteps        steps per chunk: the unit that a warp stages into shared memory for each of its
//                 rows; kSteps · kStepBytes is a multiple of 16 so that whole chunks of 16-byte
//                 aligned rows are copied with aligned 16-byte loads
//   kRows         rows a warp processes together: each activation load serves kRows rows; more
//                 for the formats with many elements per byte, whose activation traffic would
//                 otherwise approach the shared-memory/L1 bandwidth
//   kNeedsXSum    whether dot() needs Σ x over the lane's 8 elements (the K-quant minimums)
//   kUsesTables   whether dot() reads the IQ2_XXS tables (copied into shared memory per block)
//   dot<T>(step, lane, x, xsum, acc, tables): acc[t] += Σ_i w_i · x[t][i] over lane's elements
//
// Device code only: include from .cu files.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "quant/ggml_type.h"

namespace magnetar::gpu::gemv {

constexpr int kGroup = 8;                // consecutive elements per lane per step
constexpr int kStepElems = 32 * kGroup;  // elements of one step of a row

// The IQ2_XXS tables in shared memory: quant::kIq2xxsGrid, and quant::kIq2xsSigns expanded to
// byte masks (byte i is 0xff when element i of the 8 is negative), which let the signs be applied
// to 4 magnitudes at a time with integer operations.
struct SharedTables {
  uint64_t grid[256];
  uint64_t sign_masks[128];
};

// The byte mask of an 8-bit sign pattern.
__device__ __forceinline__ uint64_t sign_mask(uint32_t signs) {
  uint64_t mask = 0;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    if ((signs >> i) & 1) mask |= uint64_t{0xff} << (8 * i);
  }
  return mask;
}

// 0x80 + m or 0x80 - m in each byte (m < 128: the IQ2_XXS magnitudes 8, 25, 43), the negative
// form where `mask` is 0xff: the biased int8 form that byte_float(…, 128) turns into ±m. Neither
// the addition nor the subtraction crosses a byte (0x55 ≤ 0x80 ± m ≤ 0xab).
__device__ __forceinline__ uint32_t signed_biased(uint32_t magnitudes, uint32_t mask) {
  return 0x80808080u + (magnitudes & ~mask) - (magnitudes & mask);
}

// b - bias for byte `i` (b, 0..255) of `word`, exactly: 0x4B0000bb is the float 2^23 + b, from
// which kMagic + bias is subtracted (bias 0 for unsigned codes, 128 for int8 codes whose top bit
// was flipped).
constexpr float kMagic = 8388608.0f;  // 2^23
__device__ __forceinline__ float byte_float(uint32_t word, int i, float bias = 0.0f) {
  return __int_as_float(static_cast<int>(__byte_perm(word, 0x4B000000u, 0x7440u | i))) -
         (kMagic + bias);
}

// The float value of a small non-negative integer (< 2^23), exactly, without the slow I2F.
__device__ __forceinline__ float small_float(uint32_t v) {
  return __int_as_float(static_cast<int>(0x4B000000u | v)) - kMagic;
}

__device__ __forceinline__ float half_float(uint32_t bits) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(bits)));
}

// 4 bytes at a 2-byte aligned shared-memory address: the aligned words covering them,
// funnel-shifted. Reads up to 4 bytes past the end (the staging buffers are padded for it).
__device__ __forceinline__ uint32_t load4_shared(const uint8_t* p) {
  const uint32_t misalign = static_cast<uint32_t>(reinterpret_cast<uintptr_t>(p) & 3);
  // Pointer arithmetic (not an integer round trip) keeps the shared-memory address space visible.
  const uint32_t* w = reinterpret_cast<const uint32_t*>(p - misalign);
  return __funnelshift_r(w[0], w[1], misalign * 8);
}

// Σ_i w[i] · x[i] over 8 elements, in increasing i.
__device__ __forceinline__ float dot8(const float (&w)[8], const float (&x)[8]) {
  float s = w[0] * x[0];
#pragma unroll
  for (int i = 1; i < 8; ++i) s = __fmaf_rn(w[i], x[i], s);
  return s;
}

// The 8 bytes of (lo, hi) minus `bias`, as floats.
__device__ __forceinline__ void bytes_to_floats(uint32_t lo, uint32_t hi, float (&w)[8],
                                                float bias = 0.0f) {
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    w[i] = byte_float(lo, i, bias);
    w[4 + i] = byte_float(hi, i, bias);
  }
}

// Q8_0: a step is 8 blocks of 34 bytes (f16 d, 32 int8 codes); lane l reads block l / 4, codes
// 8 (l % 4) .. + 8, which lie at a 2-byte aligned offset. That offset depends on the lane alone
// (steps start 4-byte aligned: 272-byte steps in stages aligned to 16), so the aligned words and
// the funnel shift that extract the codes are computed once per lane, outside the loops.
struct Q8_0 {
  static constexpr quant::GgmlType kType = quant::GgmlType::kQ8_0;
  static constexpr int kStepBytes = 8 * 34;
  static constexpr int kSteps = 4;
  static constexpr int kRows = 4;
  static constexpr bool kNeedsXSum = false;
  static constexpr bool kUsesTables = false;

  template <int kTokens>
  __device__ __forceinline__ static void dot(const uint8_t* step, int lane,
                                             const float (&x)[kTokens][kGroup],
                                             const float (&)[kTokens], float (&acc)[kTokens],
                                             const SharedTables&) {
    const int block = 34 * (lane >> 2);
    const int codes = block + 2 + 8 * (lane & 3);
    const uint32_t* words = reinterpret_cast<const uint32_t*>(step + (codes & ~3));
    const uint32_t shift = static_cast<uint32_t>(codes & 3) * 8;
    const float d = half_float(*reinterpret_cast<const uint16_t*>(step + block));
    const uint32_t w0 = words[0], w1 = words[1], w2 = words[2];
    // Flipping the top bit maps int8 q to the unsigned q + 128.
    float w[8];
    bytes_to_floats(__funnelshift_r(w0, w1, shift) ^ 0x80808080u,
                    __funnelshift_r(w1, w2, shift) ^ 0x80808080u, w, 128.0f);
#pragma unroll
    for (int t = 0; t < kTokens; ++t) acc[t] = __fmaf_rn(d, dot8(w, x[t]), acc[t]);
  }
};

// IQ2_XXS: a step is one 66-byte block (f16 d, 8 groups of 8 bytes: 4 grid indices and a u32 of
// four 7-bit sign indices and the 4-bit group scale). Lane l takes group l / 4, grid index l % 4.
struct IQ2_XXS {
  static constexpr quant::GgmlType kType = quant::GgmlType::kIQ2_XXS;
  static constexpr int kStepBytes = 66;
  static constexpr int kSteps = 8;
  static constexpr int kRows = 4;
  static constexpr bool kNeedsXSum = false;
  static constexpr bool kUsesTables = true;

  template <int kTokens>
  __device__ __forceinline__ static void dot(const uint8_t* step, int lane,
                                             const float (&x)[kTokens][kGroup],
                                             const float (&)[kTokens], float (&acc)[kTokens],
                                             const SharedTables& tables) {
    const uint8_t* group = step + 2 + 8 * (lane >> 2);
    const int k = lane & 3;
    const float d = half_float(*reinterpret_cast<const uint16_t*>(step));
    const uint32_t word = load4_shared(group + 4);  // 2-byte aligned in the block
    const float db = d * (0.5f + small_float(word >> 28)) * 0.25f;
    const uint64_t magnitudes = tables.grid[group[k]];
    const uint64_t mask = tables.sign_masks[(word >> (7 * k)) & 127];
    float w[8];
    bytes_to_floats(
        signed_biased(static_cast<uint32_t>(magnitudes), static_cast<uint32_t>(mask)),
        signed_biased(static_cast<uint32_t>(magnitudes >> 32), static_cast<uint32_t>(mask >> 32)),
        w, 128.0f);
#pragma unroll
    for (int t = 0; t < kTokens; ++t) acc[t] = __fmaf_rn(db, dot8(w, x[t]), acc[t]);
  }
};

// Q2_K: a step is one 84-byte block (16 scale bytes, 64 code bytes, f16 d and dmin). Lane l's
// elements 8l .. 8l + 7 are 128h + 32j + i with h = l / 16, j = (l / 4) % 4: bits 2j of
// qs[32h + 8 (l % 4) + i], all in sub-block l / 2. Every offset is 4-byte aligned.
struct Q2_K {
  static constexpr quant::GgmlType kType = quant::GgmlType::kQ2_K;
  static constexpr int kStepBytes = 84;
  static constexpr int kSteps = 4;
  static constexpr int kRows = 4;
  static constexpr bool kNeedsXSum = true;
  static constexpr bool kUsesTables = false;

  template <int kTokens>
  __device__ __forceinline__ static void dot(const uint8_t* step, int lane,
                                             const float (&x)[kTokens][kGroup],
                                             const float (&xsum)[kTokens], float (&acc)[kTokens],
                                             const SharedTables&) {
    const uint32_t* qs =
        reinterpret_cast<const uint32_t*>(step + 16 + 32 * (lane >> 4) + 8 * (lane & 3));
    const int shift = 2 * ((lane >> 2) & 3);
    const uint32_t scale_min = step[lane >> 1];
    const uint32_t dd = *reinterpret_cast<const uint32_t*>(step + 80);
    const float scale = half_float(dd & 0xffffu) * small_float(scale_min & 15);
    const float offset = half_float(dd >> 16) * small_float(scale_min >> 4);
    float w[8];
    bytes_to_floats((qs[0] >> shift) & 0x03030303u, (qs[1] >> shift) & 0x03030303u, w);
#pragma unroll
    for (int t = 0; t < kTokens; ++t) {
      acc[t] = __fmaf_rn(scale, dot8(w, x[t]), __fmaf_rn(-offset, xsum[t], acc[t]));
    }
  }
};

// Q4_K: a step is one 144-byte block (f16 d, dmin, 12 bytes of 6-bit scales and mins, 128 code
// bytes). Lane l's elements are in sub-block j = l / 4: the low (even j) or high (odd j) nibbles
// of qs[32 (j / 2) + 8 (l % 4) + i], an 8-byte aligned offset.
struct Q4_K {
  static constexpr quant::GgmlType kType = quant::GgmlType::kQ4_K;
  static constexpr int kStepBytes = 144;
  static constexpr int kSteps = 4;
  static constexpr int kRows = 2;
  static constexpr bool kNeedsXSum = true;
  static constexpr bool kUsesTables = false;

  template <int kTokens>
  __device__ __forceinline__ static void dot(const uint8_t* step, int lane,
                                             const float (&x)[kTokens][kGroup],
                                             const float (&xsum)[kTokens], float (&acc)[kTokens],
                                             const SharedTables&) {
    const int j = lane >> 2;
    const uint2 q = *reinterpret_cast<const uint2*>(step + 16 + 32 * (j >> 1) + 8 * (lane & 3));
    const int shift = 4 * (j & 1);
    // quant::q4_k_scale_min: sub-blocks 4..7 keep their top two bits in scales[j - 4], scales[j].
    const uint8_t* scales = step + 4;
    uint32_t sc, m;
    if (j < 4) {
      sc = scales[j] & 63u;
      m = scales[j + 4] & 63u;
    } else {
      sc = (scales[j + 4] & 15u) | ((scales[j - 4] >> 6) << 4);
      m = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
    }
    const uint32_t dd = *reinterpret_cast<const uint32_t*>(step);
    const float scale = half_float(dd & 0xffffu) * small_float(sc);
    const float offset = half_float(dd >> 16) * small_float(m);
    float w[8];
    bytes_to_floats((q.x >> shift) & 0x0f0f0f0fu, (q.y >> shift) & 0x0f0f0f0fu, w);
#pragma unroll
    for (int t = 0; t < kTokens; ++t) {
      acc[t] = __fmaf_rn(scale, dot8(w, x[t]), __fmaf_rn(-offset, xsum[t], acc[t]));
    }
  }
};

// F16 and BF16: a step is 256 two-byte values; lane l reads its 8 values as one aligned 16-byte
// word.
template <bool kBrain>
struct Half16 {
  static constexpr quant::GgmlType kType = kBrain ? quant::GgmlType::kBF16 : quant::GgmlType::kF16;
  static constexpr int kStepBytes = 512;
  static constexpr int kSteps = 2;
  static constexpr int kRows = 2;
  static constexpr bool kNeedsXSum = false;
  static constexpr bool kUsesTables = false;

  __device__ __forceinline__ static float value(uint32_t bits) {
    if constexpr (kBrain) {
      return __uint_as_float(bits << 16);
    } else {
      return half_float(bits);
    }
  }

  template <int kTokens>
  __device__ __forceinline__ static void dot(const uint8_t* step, int lane,
                                             const float (&x)[kTokens][kGroup],
                                             const float (&)[kTokens], float (&acc)[kTokens],
                                             const SharedTables&) {
    const uint4 v = *reinterpret_cast<const uint4*>(step + 16 * lane);
    const uint32_t words[4] = {v.x, v.y, v.z, v.w};
    float w[8];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      w[2 * i] = value(words[i] & 0xffffu);
      w[2 * i + 1] = value(words[i] >> 16);
    }
#pragma unroll
    for (int t = 0; t < kTokens; ++t) acc[t] += dot8(w, x[t]);
  }
};
using F16 = Half16<false>;
using BF16 = Half16<true>;

// F32: a step is 256 floats; lane l reads its 8 as two aligned 16-byte words.
struct F32 {
  static constexpr quant::GgmlType kType = quant::GgmlType::kF32;
  static constexpr int kStepBytes = 1024;
  static constexpr int kSteps = 1;
  static constexpr int kRows = 2;
  static constexpr bool kNeedsXSum = false;
  static constexpr bool kUsesTables = false;

  template <int kTokens>
  __device__ __forceinline__ static void dot(const uint8_t* step, int lane,
                                             const float (&x)[kTokens][kGroup],
                                             const float (&)[kTokens], float (&acc)[kTokens],
                                             const SharedTables&) {
    const float4 a = *reinterpret_cast<const float4*>(step + 32 * lane);
    const float4 b = *reinterpret_cast<const float4*>(step + 32 * lane + 16);
    const float w[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
    for (int t = 0; t < kTokens; ++t) acc[t] += dot8(w, x[t]);
  }
};

// Whether `type` has a format.
inline bool has_format(quant::GgmlType type) {
  switch (type) {
    case quant::GgmlType::kF32:
    case quant::GgmlType::kF16:
    case quant::GgmlType::kBF16:
    case quant::GgmlType::kQ8_0:
    case quant::GgmlType::kQ2_K:
    case quant::GgmlType::kQ4_K:
    case quant::GgmlType::kIQ2_XXS:
      return true;
    default:
      return false;
  }
}

// Calls f.template operator()<Format>() with the format of `type`; false for a type without one.
template <typename F>
bool with_format(quant::GgmlType type, F&& f) {
  switch (type) {
    case quant::GgmlType::kF32:
      f.template operator()<F32>();
      return true;
    case quant::GgmlType::kF16:
      f.template operator()<F16>();
      return true;
    case quant::GgmlType::kBF16:
      f.template operator()<BF16>();
      return true;
    case quant::GgmlType::kQ8_0:
      f.template operator()<Q8_0>();
      return true;
    case quant::GgmlType::kQ2_K:
      f.template operator()<Q2_K>();
      return true;
    case quant::GgmlType::kQ4_K:
      f.template operator()<Q4_K>();
      return true;
    case quant::GgmlType::kIQ2_XXS:
      f.template operator()<IQ2_XXS>();
      return true;
    default:
      return false;
  }
}

}  // namespace magnetar::gpu::gemv
