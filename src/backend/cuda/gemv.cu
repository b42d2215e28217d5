// The decode GEMV kernels of gemv.cuh: one skeleton (staging, activation loads, reduction) around
// the per-format inner loops of gemv_formats.cuh.
#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/gemv.cuh"
#include "backend/cuda/gemv_formats.cuh"
#include "backend/cuda/weight_decode.cuh"
#include "quant/ggml_type.h"

namespace magnetar::gpu {
namespace {

using gemv::kGroup;
using gemv::kStepElems;

constexpr int kWarps = 8;
constexpr int kThreads = 32 * kWarps;
constexpr int kMaxTokens = 8;         // tokens per block
constexpr int64_t kMaxGridY = 65535;  // CUDA's limit on gridDim.y

struct GemvParams {
  const uint8_t* w;                  // dense: the matrix
  const uint8_t* const* expert_ptr;  // experts: the table of expert matrices
  const int32_t* expert;             // experts: expert of each pair
  int64_t n_experts;
  int64_t rows, cols, row_bytes;
  int64_t data_bytes;  // bytes of a row's blocks (row_bytes may be larger)
  const float* x;
  int64_t x_stride;
  int64_t x_divisor;  // experts: x row of pair p is p / x_divisor
  int64_t n_tokens;   // tokens, or pairs
  int64_t first;      // first token (dense: of block row 0) or pair of this launch
  float* y;
  int64_t y_stride;
  int k_split;  // warps sharing the K range of one row group (1, 2, 4 or 8)
  Iq2xxsTables tables;
};

// The k_split of a row of n_chunks chunks: the largest power of two ≤ kWarps and ≤ n_chunks. It
// depends on the shape alone, so every launch on a matrix sums in the same order.
int k_split_for(int64_t n_chunks) {
  int k_split = 1;
  while (k_split < kWarps && 2 * k_split <= n_chunks) k_split *= 2;
  return k_split;
}

// Rows per warp: the format's choice, at most 2 with 4 or more tokens, whose activations and
// accumulators take the registers (any choice gives the same sums: it decides which warp
// computes a row, not the order of its terms).
template <typename F, int kTokens>
__host__ __device__ constexpr int rows_per_warp() {
  return kTokens >= 4 && F::kRows > 2 ? 2 : F::kRows;
}

// Register budget: 3 blocks of 8 warps per SM for one token (85 registers), 2 otherwise, so that
// enough loads are in flight to cover the memory latency.
template <int kTokens>
__host__ __device__ constexpr int min_blocks() {
  return kTokens == 1 ? 3 : 2;
}

// Grid: x = row tiles of (kWarps / k_split) · kRows rows; y = token groups of kTokens (dense) or
// pairs (experts, kTokens = 1). See gemv.cuh for the division of work.
template <typename F, int kTokens, bool kExperts>
__global__ void __launch_bounds__(kThreads, min_blocks<kTokens>()) gemv_kernel(GemvParams p) {
  constexpr int kRows = rows_per_warp<F, kTokens>();
  constexpr int kChunkBytes = F::kStepBytes * F::kSteps;
  static_assert(kChunkBytes % 16 == 0, "chunks are copied as 16-byte words");
  constexpr int kChunkElems = kStepElems * F::kSteps;
  constexpr int kRowStride = kChunkBytes + 16;  // padding: load8_shared reads past a row's end
  constexpr int kWordsPerRow = kChunkBytes / 16;
  constexpr int kWords = kRows * kWordsPerRow;
  constexpr int kLoads = (kWords + 31) / 32;  // 16-byte loads per lane per chunk

  __shared__ __align__(16) uint8_t stage[kWarps][kRows * kRowStride];
  __shared__ float partial[kWarps][kRows][kTokens];
  __shared__ gemv::SharedTables tables;

  const int warp = static_cast<int>(threadIdx.x) / 32;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int k_split = p.k_split;
  const int row_groups = kWarps / k_split;
  const int64_t tile_row0 = static_cast<int64_t>(blockIdx.x) * row_groups * kRows;

  const uint8_t* w = p.w;
  const float* x;
  int64_t out0;  // token (or pair) of the first output row of y
  int n_tok;
  if constexpr (kExperts) {
    const int64_t pair = p.first + blockIdx.y;
    const int32_t e = p.expert[pair];
    if (e < 0 || e >= p.n_experts) {
      // A corrupt id: NaN outputs make it visible without reading outside the table.
      for (int i = static_cast<int>(threadIdx.x); i < row_groups * kRows; i += kThreads) {
        if (tile_row0 + i < p.rows)
          p.y[pair * p.y_stride + tile_row0 + i] = __int_as_float(0x7fc00000);
      }
      return;
    }
    w = p.expert_ptr[e];
    x = p.x + (pair / p.x_divisor) * p.x_stride;
    out0 = pair;
    n_tok = 1;
  } else {
    out0 = p.first + static_cast<int64_t>(blockIdx.y) * kTokens;
    x = p.x + out0 * p.x_stride;
    n_tok = static_cast<int>(min(static_cast<int64_t>(kTokens), p.n_tokens - out0));
  }
  if constexpr (F::kUsesTables) {
    for (int i = static_cast<int>(threadIdx.x); i < 256; i += kThreads)
      tables.grid[i] = p.tables.grid[i];
    for (int i = static_cast<int>(threadIdx.x); i < 128; i += kThreads)
      tables.signs[i] = p.tables.signs[i];
    __syncthreads();
  }

  const int ks = warp % k_split;
  const int64_t row0 = tile_row0 + (warp / k_split) * kRows;
  uint8_t* const my = stage[warp];
  // Rows past the end read the last row (valid memory); their sums are never written.
  auto row_offset = [&](int r) { return min(row0 + r, p.rows - 1) * p.row_bytes; };

  // Where load i of this lane reads (relative to the chunk's start in its row) and writes.
  int64_t src[kLoads];
  int dst[kLoads];
#pragma unroll
  for (int i = 0; i < kLoads; ++i) {
    const int word = lane + 32 * i;
    const int r = min(word / kWordsPerRow, kRows - 1);
    src[i] = row_offset(r) + (word % kWordsPerRow) * 16;
    dst[i] = r * kRowStride + (word % kWordsPerRow) * 16;
  }
  const bool aligned =
      ((reinterpret_cast<uintptr_t>(w) | static_cast<uintptr_t>(p.row_bytes)) & 15) == 0;
  const int64_t n_chunks = (p.cols + kChunkElems - 1) / kChunkElems;
  const int64_t full_chunks = p.cols / kChunkElems;
  auto fast = [&](int64_t c) { return aligned && c < full_chunks; };

  uint4 buf[kLoads];
  auto load = [&](int64_t c) {
    if (!fast(c)) return;
#pragma unroll
    for (int i = 0; i < kLoads; ++i) {
      if (kWords % 32 == 0 || lane + 32 * i < kWords) {
        buf[i] = __ldcs(reinterpret_cast<const uint4*>(w + src[i] + c * kChunkBytes));
      }
    }
  };
  auto store = [&](int64_t c) {
    if (fast(c)) {
#pragma unroll
      for (int i = 0; i < kLoads; ++i) {
        if (kWords % 32 == 0 || lane + 32 * i < kWords) {
          *reinterpret_cast<uint4*>(my + dst[i]) = buf[i];
        }
      }
      return;
    }
    // Unaligned rows or the last, partial chunk: 2-byte copies (every row is 2-byte aligned).
    const int64_t start = c * kChunkBytes;
    const int halves =
        static_cast<int>(min(static_cast<int64_t>(kChunkBytes), p.data_bytes - start) / 2);
    for (int i = lane; i < kRows * halves; i += 32) {
      const int r = i / halves;
      const int h = i % halves;
      reinterpret_cast<uint16_t*>(my + r * kRowStride)[h] =
          reinterpret_cast<const uint16_t*>(w + row_offset(r) + start)[h];
    }
  };

  float acc[kRows][kTokens];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
#pragma unroll
    for (int t = 0; t < kTokens; ++t) acc[r][t] = 0.0f;
  }

  int64_t c = ks;
  if (c < n_chunks) load(c);
  for (; c < n_chunks; c += k_split) {
    __syncwarp();  // the previous chunk's reads are done
    store(c);
    __syncwarp();
    if (c + k_split < n_chunks) load(c + k_split);  // in flight while this chunk is multiplied
#pragma unroll 1
    for (int s = 0; s < F::kSteps; ++s) {
      const int64_t k = c * kChunkElems + s * kStepElems + kGroup * lane;
      if (k >= p.cols) break;  // only in the last chunk; cols % 8 == 0 keeps groups whole
      float xv[kTokens][kGroup];
      float xs[kTokens];
#pragma unroll
      for (int t = 0; t < kTokens; ++t) {
        float4 a = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        float4 b = a;
        if (t < n_tok) {
          const float4* xt = reinterpret_cast<const float4*>(x + t * p.x_stride + k);
          a = __ldg(xt);
          b = __ldg(xt + 1);
        }
        xv[t][0] = a.x;
        xv[t][1] = a.y;
        xv[t][2] = a.z;
        xv[t][3] = a.w;
        xv[t][4] = b.x;
        xv[t][5] = b.y;
        xv[t][6] = b.z;
        xv[t][7] = b.w;
        xs[t] = 0.0f;
        if constexpr (F::kNeedsXSum) {
          xs[t] = ((xv[t][0] + xv[t][1]) + (xv[t][2] + xv[t][3])) +
                  ((xv[t][4] + xv[t][5]) + (xv[t][6] + xv[t][7]));
        }
      }
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        F::template dot<kTokens>(my + r * kRowStride + s * F::kStepBytes, lane, xv, xs, acc[r],
                                 tables);
      }
    }
  }

  // Lane sums by a butterfly (every lane ends with the same bits), then the k_split warps of a
  // row group in warp order.
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
#pragma unroll
    for (int t = 0; t < kTokens; ++t) {
      float v = acc[r][t];
#pragma unroll
      for (int m = 16; m >= 1; m /= 2) v += __shfl_xor_sync(0xffffffffu, v, m);
      if (lane == 0) partial[warp][r][t] = v;
    }
  }
  __syncthreads();
  for (int i = static_cast<int>(threadIdx.x); i < row_groups * kRows * kTokens; i += kThreads) {
    const int group = i / (kRows * kTokens);
    const int r = (i / kTokens) % kRows;
    const int t = i % kTokens;
    const int64_t row = tile_row0 + group * kRows + r;
    if (row >= p.rows || t >= n_tok) continue;
    float sum = partial[group * k_split][r][t];
    for (int j = 1; j < k_split; ++j) sum += partial[group * k_split + j][r][t];
    p.y[(out0 + t) * p.y_stride + row] = sum;
  }
}

std::string matrix_name(const DeviceMatrix& w) { return w.name ? w.name : "matrix"; }

// The launch geometry shared by the dense and expert forms.
template <typename F>
GemvParams base_params(const DeviceMatrix& w) {
  GemvParams p{};
  p.rows = w.rows;
  p.cols = w.cols;
  p.row_bytes = w.row_bytes;
  p.data_bytes = quant::row_bytes(w.type, w.cols);
  p.k_split = k_split_for((w.cols + kStepElems * F::kSteps - 1) / (kStepElems * F::kSteps));
  if constexpr (F::kUsesTables) p.tables = iq2xxs_device_tables();
  return p;
}

template <typename F, int kTokens>
unsigned row_tiles(const GemvParams& p) {
  const int64_t tile = (kWarps / p.k_split) * rows_per_warp<F, kTokens>();
  const int64_t tiles = (p.rows + tile - 1) / tile;
  if (tiles > 0x7fffffff) throw std::invalid_argument("gemv_cuda: too many rows in one matrix");
  return static_cast<unsigned>(tiles);
}

template <typename F, int kTokens>
void launch_dense(GemvParams p, cudaStream_t stream) {
  const int64_t groups = (p.n_tokens + kTokens - 1) / kTokens;
  for (int64_t g0 = 0; g0 < groups; g0 += kMaxGridY) {
    p.first = g0 * kTokens;
    const dim3 grid(row_tiles<F, kTokens>(p),
                    static_cast<unsigned>(std::min(kMaxGridY, groups - g0)));
    gemv_kernel<F, kTokens, false><<<grid, kThreads, 0, stream>>>(p);
    MAGNETAR_CUDA_CHECK(cudaGetLastError());
  }
}

void require_support(const DeviceMatrix& w, const float* x, int64_t x_stride, const char* what) {
  if (!gemv_supports(w, x, x_stride)) {
    throw std::invalid_argument(std::string(what) + ": " + matrix_name(w) + " (" +
                                std::string(quant::type_name(w.type)) + ", " +
                                std::to_string(w.cols) +
                                " columns) or its input is not supported by the GEMV kernels");
  }
}

}  // namespace

bool gemv_supports(const DeviceMatrix& w, const float* x, int64_t x_stride) {
  return gemv::has_format(w.type) && w.cols > 0 && w.cols % kGroup == 0 &&
         quant::row_fits(w.type, w.cols) && (reinterpret_cast<uintptr_t>(x) & 15) == 0 &&
         x_stride % 4 == 0;
}

void gemv_cuda(const DeviceMatrix& w, const float* x, int64_t x_stride, int64_t n_tokens, float* y,
               int64_t y_stride, cudaStream_t stream) {
  require_support(w, x, x_stride, "gemv_cuda");
  if (n_tokens <= 0 || w.rows == 0) return;
  gemv::with_format(w.type, [&]<typename F>() {
    GemvParams p = base_params<F>(w);
    p.w = w.data;
    p.x = x;
    p.x_stride = x_stride;
    p.n_tokens = n_tokens;
    p.y = y;
    p.y_stride = y_stride;
    if (n_tokens == 1) {
      launch_dense<F, 1>(p, stream);
    } else if (n_tokens == 2) {
      launch_dense<F, 2>(p, stream);
    } else if (n_tokens <= 4) {
      launch_dense<F, 4>(p, stream);
    } else {
      launch_dense<F, kMaxTokens>(p, stream);
    }
  });
}

void gemv_experts_cuda(const DeviceExperts& w, const int32_t* expert, int64_t n_pairs,
                       const float* x, int64_t x_divisor, float* y, cudaStream_t stream) {
  require_support(w.shape, x, w.shape.cols, "gemv_experts_cuda");
  if (x_divisor <= 0) throw std::invalid_argument("gemv_experts_cuda: x_divisor must be positive");
  if (n_pairs <= 0 || w.shape.rows == 0) return;
  gemv::with_format(w.shape.type, [&]<typename F>() {
    GemvParams p = base_params<F>(w.shape);
    p.expert_ptr = w.table;
    p.expert = expert;
    p.n_experts = w.count;
    p.x = x;
    p.x_stride = w.shape.cols;
    p.x_divisor = x_divisor;
    p.n_tokens = n_pairs;
    p.y = y;
    p.y_stride = w.shape.rows;
    for (int64_t first = 0; first < n_pairs; first += kMaxGridY) {
      p.first = first;
      const dim3 grid(row_tiles<F, 1>(p),
                      static_cast<unsigned>(std::min(kMaxGridY, n_pairs - first)));
      gemv_kernel<F, 1, true><<<grid, kThreads, 0, stream>>>(p);
      MAGNETAR_CUDA_CHECK(cudaGetLastError());
    }
  });
}

}  // namespace magnetar::gpu
