// GPU weight decoders (see dequantize.cuh). Each per-element decoder below is the device twin of
// one loop in src/quant/dequantize.cc and must stay in step with it: same operands, same order of
// operations, so that the two produce the same bits.
//
// nvcc contracts a * b - c into a fused multiply-add where the CPU code (built with
// -ffp-contract=off) rounds the product first. That cannot change a result here: every product in
// these decoders is exact in f32, since an f16 scale has 11 significant bits and the integer
// factors add at most 10 more (Q4_K: 6-bit scale x 4-bit code), so the only rounding is that of
// the final subtraction, fused or not. A decoder with an f32 scale would need __fmul_rn.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/dequantize.cuh"
#include "quant/blocks.h"
#include "quant/ggml_type.h"
#include "quant/iq2xxs_tables.h"

namespace magnetar::gpu {
namespace {

using quant::BlockIQ2_XXS;
using quant::BlockQ2_K;
using quant::BlockQ4_K;
using quant::BlockQ8_0;
using quant::GgmlType;

// Device copies of quant::kIq2xxsGrid and quant::kIq2xsSigns (iq2xxs_tables.h), uploaded by
// upload_iq2xxs_tables. Constant memory suits them: 2.2 KB, read-only, shared by every thread.
__constant__ uint64_t iq2xxs_grid[256];
__constant__ uint8_t iq2xs_signs[128];
static_assert(sizeof(iq2xxs_grid) == sizeof(quant::kIq2xxsGrid));
static_assert(sizeof(iq2xs_signs) == sizeof(quant::kIq2xsSigns));

// Exact binary16 -> binary32, the same mapping as quant::f16_to_f32: inf and NaN keep their sign
// and payload, normals are re-biased, subnormals are mant * 2^-24 (exact in f32).
__device__ float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp_mant = h & 0x7fffu;
  if (exp_mant >= 0x7c00u) return __uint_as_float(sign | 0x7f800000u | ((exp_mant & 0x3ffu) << 13));
  if (exp_mant >= 0x0400u) return __uint_as_float(sign | ((exp_mant << 13) + ((127u - 15u) << 23)));
  return __uint_as_float(sign | __float_as_uint(static_cast<float>(exp_mant) * 0x1p-24f));
}

// Per-element decoders: element e of one block (0 <= e < kBlockElems). F16 and BF16 are blocks of
// one value.

__device__ float decode_f16(const uint16_t& h, int) { return f16_to_f32(h); }

__device__ float decode_bf16(const uint16_t& h, int) {
  return __uint_as_float(static_cast<uint32_t>(h) << 16);
}

// dequantize_q8_0: d * q.
__device__ float decode_q8_0(const BlockQ8_0& x, int e) {
  return f16_to_f32(x.d) * static_cast<float>(x.qs[e]);
}

// dequantize_q2_k: d * (scale nibble) * q - dmin * (min nibble), element 128h + 32j + l in bits
// 2j..2j+1 of qs[32h + l].
__device__ float decode_q2_k(const BlockQ2_K& x, int e) {
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
__device__ void q4_k_scale_min(const uint8_t* scales, int j, int* sc, int* m) {
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
__device__ float decode_q4_k(const BlockQ4_K& x, int e) {
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
__device__ float decode_iq2_xxs(const BlockIQ2_XXS& x, int e) {
  const uint8_t* group = x.qs + 8 * (e / 32);
  const int k = (e % 32) / 8;
  const int i = e % 8;
  // The u32 of sign indices and group scale is only 2-byte aligned (66-byte blocks that start with
  // the f16 d), so it is assembled from bytes rather than loaded as one word.
  const uint32_t word =
      group[4] | group[5] << 8 | group[6] << 16 | static_cast<uint32_t>(group[7]) << 24;
  const float db = f16_to_f32(x.d) * (0.5f + static_cast<float>(word >> 28)) * 0.25f;
  const float v = db * static_cast<float>((iq2xxs_grid[group[k]] >> (8 * i)) & 0xff);
  const uint8_t signs = iq2xs_signs[(word >> (7 * k)) & 127];
  return (signs >> i) & 1 ? -v : v;
}

// One thread per output value, in a grid-stride loop: value i comes from block i / kBlockElems.
// The output writes are coalesced; a block's scales are re-read by each of its threads, through
// L1. Fine for a load-time conversion; the GEMVs have their own decoding.
template <typename Block, int kBlockElems, float (*Decode)(const Block&, int)>
__global__ void dequantize_kernel(const Block* __restrict__ x, float* __restrict__ y, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    y[i] = Decode(x[i / kBlockElems], static_cast<int>(i % kBlockElems));
  }
}

constexpr int kThreads = 256;
// The grid is capped, and each thread loops, so that any count launches: 4096 blocks of 256
// threads are a few waves on an H100/H200 (132 SMs x 8 resident blocks).
constexpr int64_t kMaxGridBlocks = 4096;

template <typename Block, int kBlockElems, float (*Decode)(const Block&, int)>
void launch(const void* src, float* dst, int64_t n, cudaStream_t stream) {
  const auto grid = static_cast<unsigned>(std::min((n + kThreads - 1) / kThreads, kMaxGridBlocks));
  const auto* blocks = static_cast<const Block*>(src);
  dequantize_kernel<Block, kBlockElems, Decode><<<grid, kThreads, 0, stream>>>(blocks, dst, n);
  MAGNETAR_CUDA_CHECK(cudaGetLastError());
}

// Fills the constant-memory tables of the current device the first time it decodes IQ2_XXS. The
// copy is ordered on `stream` and waited for, so that kernels on every stream of the device see
// the tables from then on.
void upload_iq2xxs_tables(cudaStream_t stream) {
  static std::mutex mutex;
  static std::vector<bool> uploaded;  // by device ordinal
  int device = 0;
  MAGNETAR_CUDA_CHECK(cudaGetDevice(&device));
  const std::lock_guard<std::mutex> lock(mutex);
  if (static_cast<size_t>(device) < uploaded.size() && uploaded[device]) return;
  MAGNETAR_CUDA_CHECK(cudaMemcpyToSymbolAsync(iq2xxs_grid, quant::kIq2xxsGrid, sizeof(iq2xxs_grid),
                                              0, cudaMemcpyHostToDevice, stream));
  MAGNETAR_CUDA_CHECK(cudaMemcpyToSymbolAsync(iq2xs_signs, quant::kIq2xsSigns, sizeof(iq2xs_signs),
                                              0, cudaMemcpyHostToDevice, stream));
  MAGNETAR_CUDA_CHECK(cudaStreamSynchronize(stream));
  if (static_cast<size_t>(device) >= uploaded.size()) uploaded.resize(device + 1);
  uploaded[device] = true;
}

bool is_aligned(const void* p, size_t alignment) {
  return reinterpret_cast<uintptr_t>(p) % alignment == 0;
}

}  // namespace

void dequantize_rows_cuda(GgmlType type, const void* device_src, float* device_dst,
                          int64_t n_elements, cudaStream_t stream) {
  switch (type) {
    case GgmlType::kF32:
    case GgmlType::kF16:
    case GgmlType::kBF16:
    case GgmlType::kQ8_0:
    case GgmlType::kQ2_K:
    case GgmlType::kQ4_K:
    case GgmlType::kIQ2_XXS:
      break;
    default:
      throw std::invalid_argument("dequantize_rows_cuda: unsupported type " +
                                  std::string(quant::type_name(type)));
  }
  if (!quant::row_fits(type, n_elements)) {
    throw std::invalid_argument("dequantize_rows_cuda: " + std::to_string(n_elements) +
                                " values is not a whole number of " +
                                std::string(quant::type_name(type)) + " blocks");
  }
  // Every block type starts with or holds 16-bit fields; F32 is copied byte by byte.
  if (!is_aligned(device_dst, alignof(float)) ||
      (type != GgmlType::kF32 && !is_aligned(device_src, alignof(uint16_t)))) {
    throw std::invalid_argument("dequantize_rows_cuda: misaligned source or destination");
  }
  if (n_elements == 0) return;

  switch (type) {
    case GgmlType::kF32:
      MAGNETAR_CUDA_CHECK(cudaMemcpyAsync(device_dst, device_src,
                                          static_cast<size_t>(n_elements) * sizeof(float),
                                          cudaMemcpyDeviceToDevice, stream));
      break;
    case GgmlType::kF16:
      launch<uint16_t, 1, decode_f16>(device_src, device_dst, n_elements, stream);
      break;
    case GgmlType::kBF16:
      launch<uint16_t, 1, decode_bf16>(device_src, device_dst, n_elements, stream);
      break;
    case GgmlType::kQ8_0:
      launch<BlockQ8_0, BlockQ8_0::kBlockElems, decode_q8_0>(device_src, device_dst, n_elements,
                                                             stream);
      break;
    case GgmlType::kQ2_K:
      launch<BlockQ2_K, BlockQ2_K::kBlockElems, decode_q2_k>(device_src, device_dst, n_elements,
                                                             stream);
      break;
    case GgmlType::kQ4_K:
      launch<BlockQ4_K, BlockQ4_K::kBlockElems, decode_q4_k>(device_src, device_dst, n_elements,
                                                             stream);
      break;
    case GgmlType::kIQ2_XXS:
      upload_iq2xxs_tables(stream);
      launch<BlockIQ2_XXS, BlockIQ2_XXS::kBlockElems, decode_iq2_xxs>(device_src, device_dst,
                                                                      n_elements, stream);
      break;
    default:
      break;  // excluded by the first switch
  }
}

}  // namespace magnetar::gpu
