// The tensor-core products of gemm_tc.cuh.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <stdexcept>
#include <string>

#include "backend/cuda/cublas_check.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/gemm_tc.cuh"

namespace magnetar::gpu {
namespace {

thread_local TensorCoreGemm* current = nullptr;

// cuBLAS takes int dimensions.
void check_int(int64_t v, const char* what) {
  if (v < 0 || v > INT_MAX) {
    throw std::invalid_argument(std::string("tensor-core GEMM: ") + what + " " + std::to_string(v) +
                                " outside cuBLAS's int range");
  }
}

// F16 weights can feed cuBLAS as they are when their rows are packed and 16-byte aligned.
bool usable_in_place(const DeviceMatrix& w) {
  return w.type == quant::GgmlType::kF16 && w.row_bytes == w.cols * 2 &&
         reinterpret_cast<uintptr_t>(w.data) % 16 == 0 && w.row_bytes % 16 == 0;
}

}  // namespace

TensorCoreGemm::TensorCoreGemm(const TensorCoreOptions& options) : options_(options) {
  if (options.min_tokens < 1 || options.min_expert_tokens < 1) {
    throw std::invalid_argument("tensor-core GEMM: token thresholds must be at least 1");
  }
  if (options.weight_scratch_bytes < (size_t{1} << 20)) {
    throw std::invalid_argument("tensor-core GEMM: weight scratch below 1 MiB");
  }
  MAGNETAR_CUBLAS_CHECK(cublasCreate(&handle_));
  // Device pointer mode: alpha is the inverse of the activation scale, computed on the device.
  // Reduced-precision split-K reductions are ruled out: partial sums stay fp32.
  try {
    MAGNETAR_CUBLAS_CHECK(cublasSetPointerMode(handle_, CUBLAS_POINTER_MODE_DEVICE));
    MAGNETAR_CUBLAS_CHECK(cublasSetMathMode(
        handle_, static_cast<cublasMath_t>(CUBLAS_DEFAULT_MATH |
                                           CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)));
    weight_scratch_ = DeviceArray<uint16_t>(options.weight_scratch_bytes / sizeof(uint16_t));
    scales_ = DeviceArray<F16Scale>(3);
  } catch (...) {
    cublasDestroy(handle_);
    throw;
  }
}

TensorCoreGemm::~TensorCoreGemm() {
  if (handle_ != nullptr) cublasDestroy(handle_);
}

cublasContext* TensorCoreGemm::cublas(cudaStream_t stream) {
  MAGNETAR_CUBLAS_CHECK(cublasSetStream(handle_, stream));
  return handle_;
}

void TensorCoreGemm::linear(const DeviceMatrix& w, const float* x, int64_t x_stride,
                            int64_t n_tokens, float* y, int64_t y_stride, cudaStream_t stream) {
  if (w.cols % 4 != 0) {
    throw std::invalid_argument(std::string("tensor-core GEMM: ") + (w.name ? w.name : "matrix") +
                                " has " + std::to_string(w.cols) + " columns, not a multiple of 4");
  }
  if (y_stride < w.rows) throw std::invalid_argument("tensor-core GEMM: y_stride < rows");
  if (n_tokens <= 0 || w.rows == 0) return;
  check_int(n_tokens, "token count");
  check_int(w.cols, "column count");
  check_int(y_stride, "output stride");

  // Activations: one power-of-two scale for the call, then f16.
  F16Scale* s = scale(0);
  uint16_t* x16 = grow_after(x16_, static_cast<size_t>(n_tokens * w.cols), stream);
  measure_f16_scale_cuda(x, x_stride, n_tokens, w.cols, s, stream);
  rows_to_f16_cuda(x, x_stride, n_tokens, w.cols, s, x16, stream);

  cublasHandle_t handle = cublas(stream);
  // Column-major view: W (rows × cols, row-major) is a cols × rows matrix with ld = cols, used
  // transposed; x is cols × n_tokens with ld = cols; y is rows × n_tokens with ld = y_stride.
  auto gemm = [&](const uint16_t* a, int64_t first_row, int64_t rows) {
    MAGNETAR_CUBLAS_CHECK(cublasGemmEx(
        handle, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(rows), static_cast<int>(n_tokens),
        static_cast<int>(w.cols), &s->inverse, a, CUDA_R_16F, static_cast<int>(w.cols), x16,
        CUDA_R_16F, static_cast<int>(w.cols), &s->zero, y + first_row, CUDA_R_32F,
        static_cast<int>(y_stride), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  };
  if (usable_in_place(w)) {
    check_int(w.rows, "row count");
    gemm(reinterpret_cast<const uint16_t*>(w.data), 0, w.rows);
    return;
  }
  // Slices of rows that fit the scratch, decoded then multiplied; the next slice's decoding waits
  // for this product in stream order.
  const int64_t slice = std::min<int64_t>({w.rows, weight_scratch_elements() / w.cols, INT_MAX});
  if (slice < 1) {
    throw std::invalid_argument("tensor-core GEMM: one row of " + std::to_string(w.cols) +
                                " values does not fit the weight scratch");
  }
  for (int64_t r0 = 0; r0 < w.rows; r0 += slice) {
    const int64_t rows = std::min(slice, w.rows - r0);
    decode_rows_f16_cuda(w, r0, rows, weight_scratch(), stream);
    gemm(weight_scratch(), r0, rows);
  }
}

ScopedTensorCoreGemm::ScopedTensorCoreGemm(TensorCoreGemm* gemm) : previous_(current) {
  current = gemm;
}

ScopedTensorCoreGemm::~ScopedTensorCoreGemm() { current = previous_; }

TensorCoreGemm* current_tensor_core_gemm() { return current; }

}  // namespace magnetar::gpu
