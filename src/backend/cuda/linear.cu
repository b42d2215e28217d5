// The matrix kernels of linear.cuh.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <string>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/gemm_tc.cuh"
#include "backend/cuda/gemv.cuh"
#include "backend/cuda/linear.cuh"
#include "backend/cuda/numerics.cuh"
#include "backend/cuda/weight_decode.cuh"

namespace magnetar::gpu {
namespace {

thread_local bool use_reference_order = false;

constexpr int kRows = 64;   // output rows per thread block
constexpr int kChains = 4;  // partial sums per output (the CPU's k mod 4), one thread each
constexpr int kThreads = kRows * kChains;
constexpr int kChunk = 128;             // inputs staged per step (a multiple of 4)
constexpr int kRowStride = kChunk + 4;  // ≡ 4 (mod 32): the 8 rows a warp reads hit distinct banks

struct LinearParams {
  const uint8_t* w;                  // dense: the matrix
  const uint8_t* const* expert_ptr;  // experts: the table of expert matrices
  const int32_t* expert;             // experts: expert of each pair
  int64_t rows, cols, row_bytes;
  const float* x;
  int64_t x_stride;
  int64_t x_divisor;  // experts: x row of pair p is p / x_divisor
  int64_t n_tokens;   // tokens, or pairs
  float* y;
  int64_t y_stride;
  Iq2xxsTables tables;
};

// Grid: (token tiles, row tiles). Dense: a token tile is kTokens consecutive tokens sharing W;
// experts (kTokens = 1): one pair, whose expert gives W. Thread 4r + j owns partial sum j of row
// r: the values k ≡ j (mod 4) in increasing k, exactly the CPU's chain; the four chains of a row
// sit in adjacent lanes and are combined as (s0 + s1) + (s2 + s3) by shuffles.
template <typename Decoder, int kTokens, bool kExperts>
__global__ void __launch_bounds__(kThreads) linear_kernel(LinearParams p) {
  __shared__ float w_tile[kRows * kRowStride];
  __shared__ float x_tile[kTokens][kChunk];

  const int64_t row0 = static_cast<int64_t>(blockIdx.y) * kRows;
  const int64_t tok0 = static_cast<int64_t>(blockIdx.x) * kTokens;
  const uint8_t* w = p.w;
  const float* x = p.x + tok0 * p.x_stride;
  if constexpr (kExperts) {
    w = p.expert_ptr[p.expert[tok0]];
    x = p.x + (tok0 / p.x_divisor) * p.x_stride;
  }
  const int n_tok = static_cast<int>(min(static_cast<int64_t>(kTokens), p.n_tokens - tok0));
  const int r = static_cast<int>(threadIdx.x) / kChains;
  const int chain = static_cast<int>(threadIdx.x) % kChains;

  float acc[kTokens];
#pragma unroll
  for (int t = 0; t < kTokens; ++t) acc[t] = 0.0f;

  for (int64_t k0 = 0; k0 < p.cols; k0 += kChunk) {
    // Stage: consecutive threads decode consecutive values of a row.
#pragma unroll 4
    for (int e = threadIdx.x; e < kRows * kChunk; e += kThreads) {
      const int er = e / kChunk;
      const int kk = e % kChunk;
      const int64_t row = row0 + er;
      const int64_t k = k0 + kk;
      w_tile[er * kRowStride + kk] =
          row < p.rows && k < p.cols ? Decoder::at(w + row * p.row_bytes, k, p.tables) : 0.0f;
    }
    for (int e = threadIdx.x; e < kTokens * kChunk; e += kThreads) {
      const int t = e / kChunk;
      const int kk = e % kChunk;
      const int64_t k = k0 + kk;
      x_tile[t][kk] = t < n_tok && k < p.cols ? x[t * p.x_stride + k] : 0.0f;
    }
    __syncthreads();
    const int kn = static_cast<int>(min(static_cast<int64_t>(kChunk), p.cols - k0));
    const float* wr = w_tile + r * kRowStride;
    for (int kk = chain; kk < kn; kk += kChains) {
      const float wv = wr[kk];
#pragma unroll
      for (int t = 0; t < kTokens; ++t) acc[t] += wv * x_tile[t][kk];
    }
    __syncthreads();
  }

  const int64_t row = row0 + r;
#pragma unroll
  for (int t = 0; t < kTokens; ++t) {
    // Every lane takes part in the shuffles; lane 4r + 0 ends with (s0 + s1) + (s2 + s3).
    const float pair = acc[t] + __shfl_xor_sync(0xffffffffu, acc[t], 1);
    const float sum = pair + __shfl_xor_sync(0xffffffffu, pair, 2);
    if (chain == 0 && row < p.rows && t < n_tok) p.y[(tok0 + t) * p.y_stride + row] = sum;
  }
}

void check_shape(const DeviceMatrix& w, const char* what) {
  if (w.cols % 4 != 0) {
    throw std::invalid_argument(std::string(what) + ": " + (w.name ? w.name : "matrix") + " has " +
                                std::to_string(w.cols) + " columns, not a multiple of 4");
  }
}

template <int kTokens, bool kExperts>
void launch(quant::GgmlType type, const LinearParams& p, const char* name, cudaStream_t stream) {
  const int64_t row_tiles = (p.rows + kRows - 1) / kRows;
  if (row_tiles > 65535) throw std::invalid_argument("linear_cuda: too many rows in one matrix");
  const dim3 grid(static_cast<unsigned>((p.n_tokens + kTokens - 1) / kTokens),
                  static_cast<unsigned>(row_tiles));
  const bool known = with_row_decoder(type, [&]<typename Decoder>() {
    linear_kernel<Decoder, kTokens, kExperts><<<grid, kThreads, 0, stream>>>(p);
  });
  if (!known) {
    throw std::invalid_argument(std::string("linear_cuda: ") + (name ? name : "matrix") +
                                " has type " + std::string(quant::type_name(type)) +
                                ", which has no GPU decoder");
  }
  MAGNETAR_CUDA_CHECK(cudaGetLastError());
}

Iq2xxsTables tables_for(quant::GgmlType type) {
  return type == quant::GgmlType::kIQ2_XXS ? iq2xxs_device_tables() : Iq2xxsTables{};
}

}  // namespace

void set_reference_order(bool on) { use_reference_order = on; }
bool reference_order() { return use_reference_order; }

// The dispatch point: the fast GEMV unless the CPU's order is asked for or the operand does not
// suit it. The GEMV serves every token count below the tensor-core threshold (blocks of 8 tokens
// that share each row tile through L2), so that decode, chunked prefill and batches keep agreeing
// to the bit.
void linear_cuda(const DeviceMatrix& w, const float* x, int64_t x_stride, int64_t n_tokens,
                 float* y, int64_t y_stride, cudaStream_t stream) {
  check_shape(w, "linear_cuda");
  if (n_tokens <= 0 || w.rows == 0) return;
  // Many tokens go to tensor cores when this thread installed that path (gemm_tc.cuh).
  if (TensorCoreGemm* tc = current_tensor_core_gemm();
      tc != nullptr && !reference_order() && n_tokens >= tc->options().min_tokens) {
    tc->linear(w, x, x_stride, n_tokens, y, y_stride, stream);
    return;
  }
  if (!reference_order() && gemv_supports(w, x, x_stride)) {
    gemv_cuda(w, x, x_stride, n_tokens, y, y_stride, stream);
    return;
  }
  LinearParams p{};
  p.w = w.data;
  p.rows = w.rows;
  p.cols = w.cols;
  p.row_bytes = w.row_bytes;
  p.x = x;
  p.x_stride = x_stride;
  p.x_divisor = 1;
  p.n_tokens = n_tokens;
  p.y = y;
  p.y_stride = y_stride;
  p.tables = tables_for(w.type);
  if (n_tokens == 1) {
    launch<1, false>(w.type, p, w.name, stream);
  } else {
    launch<8, false>(w.type, p, w.name, stream);
  }
}

void linear_experts_cuda(const DeviceExperts& w, const int32_t* expert, int64_t n_pairs,
                         const float* x, int64_t x_divisor, float* y, cudaStream_t stream) {
  check_shape(w.shape, "linear_experts_cuda");
  if (n_pairs <= 0) return;
  if (!reference_order() && gemv_supports(w.shape, x, w.shape.cols)) {
    gemv_experts_cuda(w, expert, n_pairs, x, x_divisor, y, stream);
    return;
  }
  LinearParams p{};
  p.expert_ptr = w.table;
  p.expert = expert;
  p.rows = w.shape.rows;
  p.cols = w.shape.cols;
  p.row_bytes = w.shape.row_bytes;
  p.x = x;
  p.x_stride = w.shape.cols;
  p.x_divisor = x_divisor;
  p.n_tokens = n_pairs;
  p.y = y;
  p.y_stride = w.shape.rows;
  p.tables = tables_for(w.shape.type);
  launch<1, true>(w.shape.type, p, w.shape.name, stream);
}

void act_quant_fp8_cuda(const float* x, int64_t n_rows, int64_t cols, float* out,
                        cudaStream_t stream) {
  if (out != x) {
    MAGNETAR_CUDA_CHECK(cudaMemcpyAsync(out, x, static_cast<size_t>(n_rows * cols) * sizeof(float),
                                        cudaMemcpyDeviceToDevice, stream));
  }
  fp8_simulate_rows_cuda(out, n_rows, cols, 128, stream);
}

}  // namespace magnetar::gpu
