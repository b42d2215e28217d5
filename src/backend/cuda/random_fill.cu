// Random fills for synthetic weights (random_fill.cuh).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/random_fill.cuh"

namespace magnetar::gpu {
namespace {

constexpr int kThreads = 256;
// Grid-stride loops keep the grid small whatever the size (tensors reach gigabytes).
constexpr int64_t kMaxBlocks = 65536;

__host__ __device__ inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// The key of one stream; word i of it is mix64(key ^ mix64(i + golden ratio)).
uint64_t stream_key(uint64_t seed, uint64_t stream) { return mix64(seed ^ mix64(stream)); }

__device__ inline uint64_t random_word(uint64_t key, uint64_t i) {
  return mix64(key ^ mix64(i + 0x9E3779B97F4A7C15ULL));
}

unsigned grid_for(int64_t n) {
  return static_cast<unsigned>(std::clamp<int64_t>((n + kThreads - 1) / kThreads, 1, kMaxBlocks));
}

__global__ void random_words_kernel(uint64_t* dst, int64_t n_words, uint64_t key) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n_words;
       i += int64_t{gridDim.x} * blockDim.x) {
    dst[i] = random_word(key, static_cast<uint64_t>(i));
  }
}

__global__ void random_tail_kernel(uint8_t* dst, int n, uint64_t key, uint64_t word) {
  const uint64_t r = random_word(key, word);
  for (int i = 0; i < n; ++i) dst[i] = static_cast<uint8_t>(r >> (8 * i));
}

__global__ void block_scales_kernel(uint8_t* dst, int64_t n_blocks, int block_bytes, int d_offset,
                                    uint16_t d_bits, int dmin_offset, uint16_t dmin_bits) {
  for (int64_t b = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; b < n_blocks;
       b += int64_t{gridDim.x} * blockDim.x) {
    uint8_t* block = dst + b * block_bytes;
    // Byte stores: block sizes (34, 66, 84, 144) leave 2-byte fields only 2-byte aligned at best.
    block[d_offset] = static_cast<uint8_t>(d_bits);
    block[d_offset + 1] = static_cast<uint8_t>(d_bits >> 8);
    if (dmin_offset >= 0) {
      block[dmin_offset] = static_cast<uint8_t>(dmin_bits);
      block[dmin_offset + 1] = static_cast<uint8_t>(dmin_bits >> 8);
    }
  }
}

template <typename T>
__global__ void uniform_kernel(T* dst, int64_t n, float mean, float half_width, uint64_t key) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    // 24 random bits: every value of the uniform is exact in float.
    const float u =
        static_cast<float>(random_word(key, static_cast<uint64_t>(i)) >> 40) * (1.0f / 16777216.0f);
    const float v = mean + half_width * (2.0f * u - 1.0f);
    if constexpr (sizeof(T) == 2) {
      dst[i] = __float2half_rn(v);
    } else {
      dst[i] = v;
    }
  }
}

}  // namespace

void fill_random_bits_cuda(uint8_t* dst, size_t bytes, uint64_t seed, uint64_t stream,
                           cudaStream_t cuda_stream) {
  if (bytes == 0) return;
  if (reinterpret_cast<uintptr_t>(dst) % 8 != 0) {
    throw std::invalid_argument("fill_random_bits_cuda: the destination is not 8-byte aligned");
  }
  const uint64_t key = stream_key(seed, stream);
  const int64_t words = static_cast<int64_t>(bytes / 8);
  if (words > 0) {
    random_words_kernel<<<grid_for(words), kThreads, 0, cuda_stream>>>(
        reinterpret_cast<uint64_t*>(dst), words, key);
    MAGNETAR_CUDA_CHECK(cudaGetLastError());
  }
  if (const int tail = static_cast<int>(bytes % 8); tail > 0) {
    random_tail_kernel<<<1, 1, 0, cuda_stream>>>(dst + words * 8, tail, key,
                                                 static_cast<uint64_t>(words));
    MAGNETAR_CUDA_CHECK(cudaGetLastError());
  }
}

void set_block_scales_cuda(uint8_t* dst, int64_t n_blocks, int block_bytes, int d_offset,
                           uint16_t d_bits, int dmin_offset, uint16_t dmin_bits,
                           cudaStream_t cuda_stream) {
  if (n_blocks <= 0) return;
  if (d_offset < 0 || d_offset + 2 > block_bytes || dmin_offset + 2 > block_bytes) {
    throw std::invalid_argument("set_block_scales_cuda: a scale lies outside the block");
  }
  block_scales_kernel<<<grid_for(n_blocks), kThreads, 0, cuda_stream>>>(
      dst, n_blocks, block_bytes, d_offset, d_bits, dmin_offset, dmin_bits);
  MAGNETAR_CUDA_CHECK(cudaGetLastError());
}

void fill_uniform_cuda(void* dst, int64_t n, bool f16, float mean, float half_width, uint64_t seed,
                       uint64_t stream, cudaStream_t cuda_stream) {
  if (n <= 0) return;
  if (reinterpret_cast<uintptr_t>(dst) % (f16 ? 2 : 4) != 0) {
    throw std::invalid_argument("fill_uniform_cuda: the destination is misaligned");
  }
  const uint64_t key = stream_key(seed, stream);
  if (f16) {
    uniform_kernel<<<grid_for(n), kThreads, 0, cuda_stream>>>(static_cast<__half*>(dst), n, mean,
                                                              half_width, key);
  } else {
    uniform_kernel<<<grid_for(n), kThreads, 0, cuda_stream>>>(static_cast<float*>(dst), n, mean,
                                                              half_width, key);
  }
  MAGNETAR_CUDA_CHECK(cudaGetLastError());
}

}  // namespace magnetar::gpu
