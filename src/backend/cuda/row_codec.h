// How the GPU stores the rows of a sequence's state: attention KV rows (window ring, compressed
// rows) and indexer key rows.
//
// With the official numerics the CPU reference rounds these rows to block-scaled minifloats: the
// first `nope` dims of a KV row to E4M3 in blocks of 64, every dim of an indexer row to E2M1 in
// blocks of 32 (model.md §6.2, §6.4). Such a value is code × 2^k, so storing the code and one
// exponent byte per block loses nothing versus the CPU's float32 copy: a 512-dim Flash KV row takes
// 448 + 7 (+1 pad) + 64 × 4 = 712 bytes instead of 2048, an indexer row 64 + 4 instead of 512. The
// RoPE dims, which the CPU keeps in float32, stay float32. With plain numerics nothing is rounded
// and rows are plain float32.
//
// Layout of one row (row_bytes(), a multiple of 4 so that rows pack with aligned floats):
//   codes   [code_bytes()]   E4M3 bytes, or E2M1 nibbles (low nibble = even dim)
//   scales  [n_blocks()]     biased exponent of each block's power-of-two scale
//   (pad to 4 bytes)
//   floats  [dims - quant_dims]  the remaining dims as float32
//
// Everything here runs on the host (import/export of states) and on the device (kernels).
#pragma once

#include <cstdint>

#include "backend/cuda/minifloat.h"

namespace magnetar::gpu {

// Float access to the 4-byte aligned float part of a row (memcpy on the host keeps the compiler's
// aliasing rules; the device reads the word directly).
MAGNETAR_HOST_DEVICE float load_float(const uint8_t* p) {
#if defined(__CUDA_ARCH__)
  return *reinterpret_cast<const float*>(p);
#else
  float x;
  std::memcpy(&x, p, sizeof x);
  return x;
#endif
}

MAGNETAR_HOST_DEVICE void store_float_at(uint8_t* p, float x) {
#if defined(__CUDA_ARCH__)
  *reinterpret_cast<float*>(p) = x;
#else
  std::memcpy(p, &x, sizeof x);
#endif
}

struct RowCodec {
  int32_t dims = 0;        // values per row
  int32_t quant_dims = 0;  // leading dims stored as codes; 0: the whole row is float32
  int32_t block = 1;       // values per scale
  MinifloatFormat format = fp8_format();

  MAGNETAR_HOST_DEVICE int32_t code_bytes() const {
    return format.fp4 ? (quant_dims + 1) / 2 : quant_dims;
  }
  MAGNETAR_HOST_DEVICE int32_t n_blocks() const { return (quant_dims + block - 1) / block; }
  MAGNETAR_HOST_DEVICE int32_t float_offset() const {
    return (code_bytes() + n_blocks() + 3) / 4 * 4;
  }
  MAGNETAR_HOST_DEVICE int32_t row_bytes() const {
    return float_offset() + 4 * (dims - quant_dims);
  }

  // Value of dim d of a stored row.
  MAGNETAR_HOST_DEVICE float value(const uint8_t* row, int32_t d) const {
    if (d >= quant_dims) return load_float(row + float_offset() + 4 * (d - quant_dims));
    const float scale = bits_float(static_cast<uint32_t>(row[code_bytes() + d / block]) << 23);
    if (format.fp4)
      return e2m1_value(static_cast<uint8_t>((row[d / 2] >> (4 * (d & 1))) & 15)) * scale;
    return e4m3_value(row[d]) * scale;
  }

  // Rounds block b of `values` (a row of `dims` floats) as the CPU's block simulation does and
  // stores its codes and scale into `row`. Blocks never share a code byte: FP4 blocks are even.
  MAGNETAR_HOST_DEVICE void encode_block(const float* values, int32_t b, uint8_t* row) const {
    const int32_t start = b * block;
    const int32_t end = start + block < quant_dims ? start + block : quant_dims;
    float amax = format.amax_floor;
    for (int32_t i = start; i < end; ++i) amax = fmaxf(amax, fabsf(values[i]));
    const float scale = pow2_ceil(amax * format.inv_max);
    row[code_bytes() + b] = static_cast<uint8_t>(float_bits(scale) >> 23);
    for (int32_t i = start; i < end; ++i) {
      const float q = round_to_format(format, values[i] / scale);
      if (format.fp4) {
        const uint8_t nibble = e2m1_code(q);
        row[i / 2] = (i & 1) ? static_cast<uint8_t>(row[i / 2] | (nibble << 4)) : nibble;
      } else {
        row[i] = e4m3_code(q);
      }
    }
  }

  // Stores dims [quant_dims, dims) of `values` as float32.
  MAGNETAR_HOST_DEVICE void store_float(const float* values, int32_t d, uint8_t* row) const {
    store_float_at(row + float_offset() + 4 * (d - quant_dims), values[d]);
  }

  // Encodes a whole row (one thread's work; kernels split it by block instead).
  MAGNETAR_HOST_DEVICE void encode(const float* values, uint8_t* row) const {
    for (int32_t i = code_bytes() + n_blocks(); i < float_offset(); ++i) row[i] = 0;
    for (int32_t b = 0; b < n_blocks(); ++b) encode_block(values, b, row);
    for (int32_t d = quant_dims; d < dims; ++d) store_float(values, d, row);
  }
};

// Row formats of one model: KV rows of head_dim values whose first head_dim - rope_dim are
// FP8-rounded, and indexer rows of indexer_head_dim values, all FP4-rounded (official numerics);
// or float32 rows (plain numerics).
inline RowCodec kv_row_codec(int32_t head_dim, int32_t rope_dim, bool official) {
  return {head_dim, official ? head_dim - rope_dim : 0, 64, fp8_format()};
}
inline RowCodec indexer_row_codec(int32_t dim, bool official) {
  return {dim, official ? dim : 0, 32, fp4_format()};
}

}  // namespace magnetar::gpu
