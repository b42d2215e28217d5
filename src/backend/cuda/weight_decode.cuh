// Device decoders of the weight formats: element e of one block, exactly as the CPU decodes it.
//
// Each decoder is the device twin of one loop in src/quant/dequantize.cc: same operands, same order
// of operations, so that the two produce the same bits. The load-time converter (dequantize.cu)
// and the matrix kernels (linear.cu) both decode through these functions.
//
// nvcc would contract a * b - c into a fused multiply-add where the CPU code (built with
// -ffp-contract=off) rounds the product first. That cannot change a result here: every product in
// these decoders is exact in f32, since an f16 scale has 11 significant bits and the integer
// factors add at most 10 more (Q4_K: 6-bit scale x 4-bit code), so the only rounding is that of
// the final subtraction, fused or not. (The library is built with -fmad=false anyway.)
//
// Device code only: include from .cu files.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "quant/blocks.h"
#include "quant/ggml_type.h"

namespace magnetar::gpu {

// Device copies of quant::kIq2xxsGrid and quant::kIq2xsSigns (iq2xxs_tables.h).
struct Iq2xxsTables {
  const uint64_t* grid = nullptr;  // [256]
  const uint8_t* signs = nullptr;  // [128]
};

// The tables in the global memory of the current device, uploaded on first use (synchronously:
// not while a stream is being captured). Thread-safe; the copies live as long as the process.
Iq2xxsTables iq2xxs_device_tables();

// Exact binary16 -> binary32, the same mapping as quant::f16_to_f32: inf and NaN keep their sign
// and payload, normals are re-biased, subnormals are mant * 2^-24 (exact in f32).
__device__ __forceinline__ float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp_mant = h & 0x7fffu;
  if (exp_mant >= 0x7c00u) return __uint_as_float(sign | 0x7f800000u | ((exp_mant & 0x3ffu) << 13));
  if (exp_mant >= 0x0400u) return __uint_as_float(sign | ((exp_mant << 13) + ((127u - 15u) << 23)));
  return __uint_as_float(sign | __float_as_uint(static_cast<float>(exp_mant) * 0x1p-24f));
}

// Per-element decoders: element e of one block (0 <= e < block elements). F32, F16 and BF16 are
// blocks of one value.

__device__ __forceinline__ float decode_f32(const float& x, int, const Iq2xxsTables&) { return x; }

__device__ __forceinline__ float decode_f16(const uint16_t& h, int, const Iq2xxsTables&) {
  return f16_to_f32(h);
}

__device__ __forceinline__ float decode_bf16(const uint16_t& h, int, const Iq2xxsTables&) {
  return __uint_as_float(static_cast<uint32_t>(h) << 16);
}

// dequantize_q8_0: d * q.
__device__ __forceinline__ float decode_q8_0(const quant::BlockQ8_0& x, int e,
                                             const Iq2xxsTables&) {
  return f16_to_f32(x.d) * static_cast<float>(x.qs[e]);
}

// dequantize_q2_k: d * (scale nibble) * q - dmin * (min nibble), element 128h + 32j + l in bits
// 2j..2j+1 of qs[32h + l].
__device__ __forceinline__ float decode_q2_k(const quant::BlockQ2_K& x, int e,
                                             const Iq2xxsTables&) {
  const float d = f16_to_f32(x.d);
  const float dmin = f16_to_f32(x.dmin);
  const int h = e / 128;
  const int j = (e % 128) / 32;
  const int l = e % 32;
  const int q = (x.qs[32 * h + l] >> (2 * j)) & 3;
  const uint8_t s = x.scales[e / 16];
  return d * static_cast<float>(s & 15) * static_cast<float>(q) - dmin * static_cast<float>(s >> 4);
}

// quant::q4_k_scale_min (blocks.h) for device code: the 6-bit scale and min of sub-block j.
__device__ __forceinline__ void q4_k_scale_min(const uint8_t* scales, int j, int* sc, int* m) {
  if (j < 4) {
    *sc = scales[j] & 63;
    *m = scales[j + 4] & 63;
  } else {
    *sc = (scales[j + 4] & 15) | ((scales[j - 4] >> 6) << 4);
    *m = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
  }
}

// dequantize_q4_k: (d * sc) * q - dmin * m; sub-block j is the low (even j) or high (odd j)
// nibbles of qs[32 * (j / 2) ...].
__device__ __forceinline__ float decode_q4_k(const quant::BlockQ4_K& x, int e,
                                             const Iq2xxsTables&) {
  const int j = e / 32;
  const int l = e % 32;
  int sc;
  int m;
  q4_k_scale_min(x.scales, j, &sc, &m);
  const float scale = f16_to_f32(x.d) * static_cast<float>(sc);
  const float offset = f16_to_f32(x.dmin) * static_cast<float>(m);
  const int q = (x.qs[32 * (j / 2) + l] >> (4 * (j % 2))) & 15;
  return scale * static_cast<float>(q) - offset;
}

// dequantize_iq2_xxs: +-db * grid magnitude with db = d * (0.5 + s) * 0.25, for element
// 32g + 8k + i of group g, sub-group k.
__device__ __forceinline__ float decode_iq2_xxs(const quant::BlockIQ2_XXS& x, int e,
                                                const Iq2xxsTables& tables) {
  const uint8_t* group = x.qs + 8 * (e / 32);
  const int k = (e % 32) / 8;
  const int i = e % 8;
  // The u32 of sign indices and group scale is only 2-byte aligned (66-byte blocks that start with
  // the f16 d), so it is assembled from bytes rather than loaded as one word.
  const uint32_t word =
      group[4] | group[5] << 8 | group[6] << 16 | static_cast<uint32_t>(group[7]) << 24;
  const float db = f16_to_f32(x.d) * (0.5f + static_cast<float>(word >> 28)) * 0.25f;
  const float v = db * static_cast<float>((tables.grid[group[k]] >> (8 * i)) & 0xff);
  const uint8_t signs = tables.signs[(word >> (7 * k)) & 127];
  return (signs >> i) & 1 ? -v : v;
}

// Element k of a row of one type: the block holding it and the element within the block.
template <typename Block, int kBlockElems, float (*Decode)(const Block&, int, const Iq2xxsTables&)>
struct RowDecoder {
  static constexpr int kElems = kBlockElems;
  __device__ __forceinline__ static float at(const uint8_t* row, int64_t k,
                                             const Iq2xxsTables& tables) {
    const auto* blocks = reinterpret_cast<const Block*>(row);
    return Decode(blocks[k / kBlockElems], static_cast<int>(k % kBlockElems), tables);
  }
};

using DecodeF32 = RowDecoder<float, 1, decode_f32>;
using DecodeF16 = RowDecoder<uint16_t, 1, decode_f16>;
using DecodeBF16 = RowDecoder<uint16_t, 1, decode_bf16>;
using DecodeQ8_0 = RowDecoder<quant::BlockQ8_0, quant::BlockQ8_0::kBlockElems, decode_q8_0>;
using DecodeQ2_K = RowDecoder<quant::BlockQ2_K, quant::BlockQ2_K::kBlockElems, decode_q2_k>;
using DecodeQ4_K = RowDecoder<quant::BlockQ4_K, quant::BlockQ4_K::kBlockElems, decode_q4_k>;
using DecodeIQ2_XXS =
    RowDecoder<quant::BlockIQ2_XXS, quant::BlockIQ2_XXS::kBlockElems, decode_iq2_xxs>;

// Calls f.template operator()<Decoder>() with the decoder of `type`; returns false for a type
// without one.
template <typename F>
bool with_row_decoder(quant::GgmlType type, F&& f) {
  switch (type) {
    case quant::GgmlType::kF32:
      f.template operator()<DecodeF32>();
      return true;
    case quant::GgmlType::kF16:
      f.template operator()<DecodeF16>();
      return true;
    case quant::GgmlType::kBF16:
      f.template operator()<DecodeBF16>();
      return true;
    case quant::GgmlType::kQ8_0:
      f.template operator()<DecodeQ8_0>();
      return true;
    case quant::GgmlType::kQ2_K:
      f.template operator()<DecodeQ2_K>();
      return true;
    case quant::GgmlType::kQ4_K:
      f.template operator()<DecodeQ4_K>();
      return true;
    case quant::GgmlType::kIQ2_XXS:
      f.template operator()<DecodeIQ2_XXS>();
      return true;
    default:
      return false;
  }
}

}  // namespace magnetar::gpu
