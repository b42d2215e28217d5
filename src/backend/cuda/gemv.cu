// The decode GEMV kernels of gemv.cuh: one skeleton (staging, activation loads, reduction) around
// the per-format inner loops of gemv_formats.cuh.
#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_device.h"
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
constexpr int kMaxTokens = 8;              // tokens per block
constexpr int64_t kMaxGridY = 65535;       // CUDA's limit on gridDim.y
constexpr int64_t kMaxGridX = 0x7fffffff;  // and on gridDim.x

struct GemvParams {
  const uint8_t* w;                  // dense: the matrix
  const uint8_t* const* expert_ptr;  // experts: the table of expert matrices
  const int32_t* expert;             // experts: expert of each pair (null: pair % n_experts)
  int64_t n_experts;
  int64_t expert_bytes;  // experts without a table: matrix e at w + e · expert_bytes
  int64_t rows, cols, row_bytes;
  int64_t data_bytes;  // bytes of a row's blocks (row_bytes may be larger)
  const float* x;
  int64_t x_stride;
  int64_t x_divisor;  // experts: x row of pair p is p / x_divisor
  int64_t n_tokens;   // tokens, or pairs
  float* y;
  int64_t y_stride;
  int k_split;  // warps sharing the K range of one row group (1, 2, 4 or 8)
  Iq2xxsTables tables;
};

// Row tiles wanted per matrix: about 2.5 per resident block of an H200 (132 SMs × 3 blocks), so
// that the persistent blocks share the tiles evenly.
constexpr int64_t kMinTiles = 1024;

// The k_split of a matrix with n_chunks chunks per row and `rows` rows, for a format whose warps
// take up to `format_rows` rows: the smallest power of two (≤ kWarps and ≤ n_chunks) that still
// cuts the matrix into kMinTiles tiles. Large matrices thus get k_split 1 (each warp sums whole
// rows: no partial sums to add, and long per-warp streams), small ones up to 8 warps per row to
// spread their few rows over the GPU. It depends on the shape and format alone (not on the token
// count or the device), so every launch on a matrix sums in the same order.
int k_split_for(int64_t n_chunks, int64_t rows, int format_rows) {
  int k_split = 1;
  while (k_split < kWarps && 2 * k_split <= n_chunks &&
         rows / ((kWarps / k_split) * format_rows) < kMinTiles) {
    k_split *= 2;
  }
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

// Stages in each warp's ring: as many as fit 64 KB per block (3 blocks of 8 warps then fit an SM's
// 228 KB), between 2 and 4. One stage is being multiplied while the others are in flight.
template <typename F, int kTokens>
__host__ __device__ constexpr int ring_depth() {
  constexpr int stage = rows_per_warp<F, kTokens>() * (F::kStepBytes * F::kSteps + 16);
  constexpr int fit = 65536 / (kWarps * stage);
  return fit < 2 ? 2 : (fit > 4 ? 4 : fit);
}

template <typename F, int kTokens>
__host__ __device__ constexpr int ring_bytes() {
  return kWarps * ring_depth<F, kTokens>() * rows_per_warp<F, kTokens>() *
         (F::kStepBytes * F::kSteps + 16);
}

// 16 bytes from global to shared memory without passing through registers (cp.async, sm_80+),
// cached in L2 only: the weights are read once.
__device__ __forceinline__ void copy16_async(void* shared, const void* global) {
  const uint32_t address = static_cast<uint32_t>(__cvta_generic_to_shared(shared));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(address), "l"(global));
}
__device__ __forceinline__ void commit_copies() { asm volatile("cp.async.commit_group;\n" ::); }
template <int kPending>
__device__ __forceinline__ void wait_copies() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

// Grid: x = token groups of kTokens (dense) or pairs (experts, kTokens = 1); y = a few blocks per
// SM, block y taking the row tiles y, y + gridDim.y, ... of (kWarps / k_split) · kRows rows each.
// Blocks are scheduled x first, so the blocks that read the same rows (other token groups, other
// pairs of the same expert) run close together and find them in L2: DRAM sees each row tile about
// once.
//
// Each warp streams its items, (tile, chunk) in tile order then chunk order, through a ring of
// ring_depth() stages in shared memory: while item i is multiplied, items i + 1 .. i + depth - 1
// are in flight as cp.async copies, across tile boundaries, so every warp keeps a few KB of loads
// in flight for its whole life. At the end of each tile the k_split partial sums of a row are added
// in warp order through shared memory (two buffers, so that warps may run one tile ahead). See
// gemv.cuh for the division of work.
template <typename F, int kTokens, bool kExperts>
__global__ void __launch_bounds__(kThreads, min_blocks<kTokens>()) gemv_kernel(GemvParams p) {
  constexpr int kRows = rows_per_warp<F, kTokens>();
  constexpr int kChunkBytes = F::kStepBytes * F::kSteps;
  static_assert(kChunkBytes % 16 == 0, "chunks are copied as 16-byte words");
  constexpr int kChunkElems = kStepElems * F::kSteps;
  constexpr int kRowStride = kChunkBytes + 16;  // padding: the formats read a word past a row's end
  constexpr int kStageBytes = kRows * kRowStride;
  constexpr int kDepth = ring_depth<F, kTokens>();
  constexpr int kWordsPerRow = kChunkBytes / 16;
  constexpr int kWords = kRows * kWordsPerRow;
  constexpr int kLoads = (kWords + 31) / 32;  // 16-byte copies per lane per item

  extern __shared__ __align__(16) uint8_t rings[];
  __shared__ float partial[2][kWarps][kRows][kTokens];
  __shared__ gemv::SharedTables tables;

  const int warp = static_cast<int>(threadIdx.x) / 32;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int k_split = p.k_split;
  const int row_groups = kWarps / k_split;
  const int64_t tile_rows = row_groups * kRows;
  const int64_t tiles = (p.rows + tile_rows - 1) / tile_rows;
  const int my_tiles = static_cast<int>(
      blockIdx.y < tiles ? (tiles - 1 - blockIdx.y) / gridDim.y + 1 : 0);  // same for every warp

  const uint8_t* w = p.w;
  const float* x;
  int64_t out0;  // token (or pair) of the first output row of y
  int n_tok;
  if constexpr (kExperts) {
    const int64_t pair = blockIdx.x;
    const int32_t e =
        p.expert != nullptr ? p.expert[pair] : static_cast<int32_t>(pair % p.n_experts);
    if (e < 0 || e >= p.n_experts) {
      // A corrupt id: NaN outputs make it visible without reading outside the table.
      for (int j = 0; j < my_tiles; ++j) {
        const int64_t row0 = (blockIdx.y + static_cast<int64_t>(j) * gridDim.y) * tile_rows;
        for (int i = static_cast<int>(threadIdx.x); i < tile_rows; i += kThreads) {
          if (row0 + i < p.rows) p.y[pair * p.y_stride + row0 + i] = __int_as_float(0x7fc00000);
        }
      }
      return;
    }
    w = p.expert_ptr != nullptr ? p.expert_ptr[e] : p.w + e * p.expert_bytes;
    x = p.x + (pair / p.x_divisor) * p.x_stride;
    out0 = pair;
    n_tok = 1;
  } else {
    out0 = static_cast<int64_t>(blockIdx.x) * kTokens;
    x = p.x + out0 * p.x_stride;
    n_tok = static_cast<int>(min(static_cast<int64_t>(kTokens), p.n_tokens - out0));
  }
  if constexpr (F::kUsesTables) {
    for (int i = static_cast<int>(threadIdx.x); i < 256; i += kThreads)
      tables.grid[i] = p.tables.grid[i];
    for (int i = static_cast<int>(threadIdx.x); i < 128; i += kThreads)
      tables.sign_masks[i] = gemv::sign_mask(p.tables.signs[i]);
    __syncthreads();
  }

  const int ks = warp % k_split;
  const int group = warp / k_split;
  uint8_t* const ring = rings + warp * kDepth * kStageBytes;
  const int n_chunks = static_cast<int>((p.cols + kChunkElems - 1) / kChunkElems);
  const int full_chunks = static_cast<int>(p.cols / kChunkElems);
  const int per_tile = (n_chunks - ks + k_split - 1) / k_split;  // ≥ 1: k_split ≤ n_chunks
  const bool aligned =
      ((reinterpret_cast<uintptr_t>(w) | static_cast<uintptr_t>(p.row_bytes)) & 15) == 0;
  auto fast = [&](int c) { return aligned && c < full_chunks; };
  // First row of this warp in the block's tile j. Rows past the end read the last row (valid
  // memory); their sums are never written.
  auto warp_row0 = [&](int j) {
    return (blockIdx.y + static_cast<int64_t>(j) * gridDim.y) * tile_rows + group * kRows;
  };
  auto row_start = [&](int64_t row0, int r) { return w + min(row0 + r, p.rows - 1) * p.row_bytes; };

  // The items of this warp are (tile j, chunk ks + m · k_split) for j < my_tiles, m < per_tile, in
  // that order. Two cursors walk them: the issuing one, depth - 1 items ahead, and the consuming
  // one. Indices advance by counting (no division in the loop). Copy slot l of a lane moves the
  // 16-byte word lane + 32 l of an item: row slot_row[l], byte slot_at[l] of the row's chunk.
  int slot_row[kLoads], slot_at[kLoads];
#pragma unroll
  for (int l = 0; l < kLoads; ++l) {
    const int word = lane + 32 * l;
    slot_row[l] = min(word / kWordsPerRow, kRows - 1);
    slot_at[l] = (word % kWordsPerRow) * 16;
  }
  int issue_tile = 0, issue_m = 0, issue_stage = 0;
  const uint8_t* issue_src[kLoads];  // slot l's word in chunk 0 of the issuing tile
  auto point_issue_tile = [&]() {
    const int64_t row0 = warp_row0(issue_tile);
#pragma unroll
    for (int l = 0; l < kLoads; ++l) issue_src[l] = row_start(row0, slot_row[l]) + slot_at[l];
  };
  if (my_tiles > 0) point_issue_tile();
  // Starts the copies of the next item into its stage (none for an unaligned or partial chunk,
  // which the consumer copies itself, or past the last item); always one commit group per call.
  auto issue_next = [&]() {
    if (issue_tile < my_tiles) {
      const int c = ks + issue_m * k_split;
      if (fast(c)) {
        uint8_t* const stage = ring + issue_stage * kStageBytes;
        const int64_t offset = static_cast<int64_t>(c) * kChunkBytes;
#pragma unroll
        for (int l = 0; l < kLoads; ++l) {
          if (kWords % 32 == 0 || lane + 32 * l < kWords) {
            copy16_async(stage + slot_row[l] * kRowStride + slot_at[l], issue_src[l] + offset);
          }
        }
      }
      issue_stage = issue_stage + 1 == kDepth ? 0 : issue_stage + 1;
      if (++issue_m == per_tile) {
        issue_m = 0;
        if (++issue_tile < my_tiles) point_issue_tile();
      }
    }
    commit_copies();
  };
  // Unaligned rows or the last, partial chunk: 2-byte copies (every row is 2-byte aligned).
  auto copy_slow = [&](int j, int c, uint8_t* stage) {
    const int64_t row0 = warp_row0(j);
    const int64_t start = static_cast<int64_t>(c) * kChunkBytes;
    const int halves =
        static_cast<int>(min(static_cast<int64_t>(kChunkBytes), p.data_bytes - start) / 2);
    for (int i = lane; i < kRows * halves; i += 32) {
      const int r = i / halves;
      const int h = i % halves;
      reinterpret_cast<uint16_t*>(stage + r * kRowStride)[h] =
          reinterpret_cast<const uint16_t*>(row_start(row0, r) + start)[h];
    }
  };

  float acc[kRows][kTokens];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
#pragma unroll
    for (int t = 0; t < kTokens; ++t) acc[r][t] = 0.0f;
  }

#pragma unroll
  for (int i = 0; i < kDepth - 1; ++i) issue_next();
  int stage_index = 0;
  for (int j = 0; j < my_tiles; ++j) {
    for (int m = 0; m < per_tile; ++m) {
      issue_next();  // into the stage of the previous item, which every lane has finished
      wait_copies<kDepth - 1>();
      __syncwarp();  // every lane's copies of this item are visible to the warp
      const int c = ks + m * k_split;
      uint8_t* const stage = ring + stage_index * kStageBytes;
      stage_index = stage_index + 1 == kDepth ? 0 : stage_index + 1;
      if (!fast(c)) {
        copy_slow(j, c, stage);
        __syncwarp();
      }
#pragma unroll 1
      for (int s = 0; s < F::kSteps; ++s) {
        const int64_t k = static_cast<int64_t>(c) * kChunkElems + s * kStepElems + kGroup * lane;
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
          F::template dot<kTokens>(stage + r * kRowStride + s * F::kStepBytes, lane, xv, xs, acc[r],
                                   tables);
        }
      }
      __syncwarp();  // the stage may be refilled
    }

    // The end of tile j for this warp: lane sums by a butterfly (every lane ends with the same
    // bits), then the k_split warps of each row group in warp order.
    const int buffer = j & 1;
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
#pragma unroll
      for (int t = 0; t < kTokens; ++t) {
        float v = acc[r][t];
#pragma unroll
        for (int m = 16; m >= 1; m /= 2) v += __shfl_xor_sync(0xffffffffu, v, m);
        if (lane == 0) partial[buffer][warp][r][t] = v;
        acc[r][t] = 0.0f;
      }
    }
    __syncthreads();
    const int64_t tile_row0 = (blockIdx.y + static_cast<int64_t>(j) * gridDim.y) * tile_rows;
    for (int i = static_cast<int>(threadIdx.x); i < row_groups * kRows * kTokens; i += kThreads) {
      const int g = i / (kRows * kTokens);
      const int r = (i / kTokens) % kRows;
      const int t = i % kTokens;
      const int64_t row = tile_row0 + g * kRows + r;
      if (row >= p.rows || t >= n_tok) continue;
      float sum = partial[buffer][g * k_split][r][t];
      for (int m = 1; m < k_split; ++m) sum += partial[buffer][g * k_split + m][r][t];
      p.y[(out0 + t) * p.y_stride + row] = sum;
    }
  }
  wait_copies<0>();  // no copy may outlive the block
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
  p.k_split = k_split_for((w.cols + kStepElems * F::kSteps - 1) / (kStepElems * F::kSteps), w.rows,
                          F::kRows);
  if constexpr (F::kUsesTables) p.tables = iq2xxs_device_tables();
  return p;
}

// The blocks of the kernel that the current device holds at once (SMs × blocks per SM), which
// sizes the persistent grid; the first call on a device also allows the kernel its dynamic shared
// memory (above the default 48 KB for some formats).
template <typename F, int kTokens, bool kExperts>
int64_t resident_blocks() {
  return once_per_device([](int device) {
    auto* kernel = gemv_kernel<F, kTokens, kExperts>;
    constexpr int kRingBytes = ring_bytes<F, kTokens>();
    MAGNETAR_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kRingBytes));
    int sms = 0, per_sm = 0;
    MAGNETAR_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    MAGNETAR_CUDA_CHECK(
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, kRingBytes));
    return int64_t{std::max(1, sms) * std::max(1, per_sm)};
  });
}

// Launches the kernel over n_x token groups or pairs, with as many row-tile blocks per group as
// fill the device once (each block then loops over its tiles).
template <typename F, int kTokens, bool kExperts>
void launch(const GemvParams& p, int64_t n_x, cudaStream_t stream) {
  const int64_t tile = (kWarps / p.k_split) * rows_per_warp<F, kTokens>();
  const int64_t tiles = (p.rows + tile - 1) / tile;
  if (n_x > kMaxGridX) {
    throw std::invalid_argument("gemv_cuda: " + std::to_string(n_x) +
                                " token groups or pairs in one call");
  }
  const int64_t resident = resident_blocks<F, kTokens, kExperts>();
  const int64_t blocks_y =
      std::min({tiles, std::max<int64_t>(1, (resident + n_x - 1) / n_x), kMaxGridY});
  const dim3 grid(static_cast<unsigned>(n_x), static_cast<unsigned>(blocks_y));
  gemv_kernel<F, kTokens, kExperts><<<grid, kThreads, ring_bytes<F, kTokens>(), stream>>>(p);
  MAGNETAR_CUDA_CHECK(cudaGetLastError());
}

template <typename F, int kTokens>
void launch_dense(const GemvParams& p, cudaStream_t stream) {
  launch<F, kTokens, false>(p, (p.n_tokens + kTokens - 1) / kTokens, stream);
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
    launch<F, 1, true>(p, n_pairs, stream);
  });
}

void gemv_grouped_cuda(const DeviceMatrix& w, int64_t groups, const float* x, int64_t n_tokens,
                       float* y, cudaStream_t stream) {
  if (groups <= 0 || w.rows % groups != 0) {
    throw std::invalid_argument("gemv_grouped_cuda: " + matrix_name(w) + " has " +
                                std::to_string(w.rows) + " rows, not a multiple of " +
                                std::to_string(groups) + " groups");
  }
  DeviceMatrix group = w.row_slice(0, w.rows / groups);  // the shape of one group's matrix
  require_support(group, x, group.cols, "gemv_grouped_cuda");
  if (n_tokens <= 0 || group.rows == 0) return;
  gemv::with_format(w.type, [&]<typename F>() {
    GemvParams p = base_params<F>(group);
    p.w = w.data;
    p.n_experts = groups;
    p.expert_bytes = group.rows * group.row_bytes;
    p.x = x;
    p.x_stride = group.cols;
    p.x_divisor = 1;
    p.n_tokens = n_tokens * groups;
    p.y = y;
    p.y_stride = group.rows;
    launch<F, 1, true>(p, n_tokens * groups, stream);
  });
}

}  // namespace magnetar::gpu
