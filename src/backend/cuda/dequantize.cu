// The load-time weight converter (see dequantize.cuh). The per-element decoders it runs are in
// weight_decode.cuh, shared with the matrix kernels.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/dequantize.cuh"
#include "backend/cuda/weight_decode.cuh"
#include "quant/ggml_type.h"

namespace magnetar::gpu {
namespace {

using quant::GgmlType;

// One thread per output value, in a grid-stride loop: value i comes from block i / kBlockElems.
// The output writes are coalesced; a block's scales are re-read by each of its threads, through
// L1. Fine for a load-time conversion; the GEMVs have their own decoding.
template <typename Decoder>
__global__ void dequantize_kernel(const uint8_t* __restrict__ x, float* __restrict__ y, int64_t n,
                                  Iq2xxsTables tables) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    y[i] = Decoder::at(x, i, tables);
  }
}

constexpr int kThreads = 256;
// The grid is capped, and each thread loops, so that any count launches: 4096 blocks of 256
// threads are a few waves on an H100/H200 (132 SMs x 8 resident blocks).
constexpr int64_t kMaxGridBlocks = 4096;

template <typename Decoder>
void launch(const void* src, float* dst, int64_t n, Iq2xxsTables tables, cudaStream_t stream) {
  const auto grid = static_cast<unsigned>(std::min((n + kThreads - 1) / kThreads, kMaxGridBlocks));
  dequantize_kernel<Decoder>
      <<<grid, kThreads, 0, stream>>>(static_cast<const uint8_t*>(src), dst, n, tables);
  MAGNETAR_CUDA_CHECK(cudaGetLastError());
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

  if (type == GgmlType::kF32) {
    MAGNETAR_CUDA_CHECK(cudaMemcpyAsync(device_dst, device_src,
                                        static_cast<size_t>(n_elements) * sizeof(float),
                                        cudaMemcpyDeviceToDevice, stream));
    return;
  }
  const Iq2xxsTables tables = type == GgmlType::kIQ2_XXS ? iq2xxs_device_tables() : Iq2xxsTables{};
  with_row_decoder(type, [&]<typename Decoder>() {
    launch<Decoder>(device_src, device_dst, n_elements, tables, stream);
  });
}

}  // namespace magnetar::gpu
