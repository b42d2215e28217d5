// Matrix products of stored weights on tensor cores, for many tokens at once (prefill).
//
// linear_cuda (linear.cuh) reproduces the CPU's summation order bit for bit, one fp32 FMA at a
// time; that is the reference, and far too slow for a long prompt. This path trades the exact
// order for cuBLAS on tensor cores:
//   1. the weights are decoded to binary16 (f16_convert.cuh) into a scratch buffer, a slice of
//      rows at a time so that the scratch stays within its budget (F16 weights whose rows are
//      16-byte aligned are used in place);
//   2. the activations are scaled by a power of two chosen on the device and rounded to binary16;
//   3. cublasGemmEx multiplies them with fp32 accumulation and fp32 output, alpha undoing the
//   scale.
//
// Why binary16, and not bfloat16 or TF32. Every product of two f16 values is exact in fp32, so the
// error is the rounding of each operand plus the fp32 accumulation: for an output y = Σ_k w_k·x_k,
//   |ŷ − y| ≤ (2·2^-11 + 2^-22 + K·2^-24) · Σ_k |w_k·x_k|  (+ subnormal terms, see below),
// i.e. 1.0e-3 plus 6e-8 per summed term, of the absolute sum in the worst case; with rounding
// errors of random sign the typical relative error of a product is √(2/3)·2^-11 ≈ 4e-4. bfloat16
// keeps 8 significant bits instead of 11: the same analysis gives 2^-8 per operand, 8 times worse
// (≈3e-3 typical), for no gain in speed. TF32 has f16's 11 bits and fp32's range but half the
// tensor-core rate and twice the scratch traffic. f16's drawback is its range (±65504, subnormal
// below 2^-14), which the activation scale removes (f16_convert.cuh) and which trained weights
// never reach. Subnormal terms: weights below 2^-14 are rounded to 2^-25 absolute, activations
// below 2^-28 of the call's largest magnitude to 2^-39 of it. In the official numerics the inputs
// of the FP8 projections are E4M3 values times powers of two: exact in f16 after the scaling, so
// there only the weights are rounded.
//
// Results do not depend on the other tokens of a call, except through cuBLAS's choice of kernel
// (its split of K may depend on the token count) and a scale change when one token's values exceed
// the others' by more than 2^28: chunked and whole prompts agree to fp32 rounding, not to the bit.
// Runs are reproducible: cuBLAS gives the same bits for the same shapes on the same GPU.
//
// Use. A TensorCoreGemm holds the cuBLAS handle and the scratch buffers. ScopedTensorCoreGemm
// installs one for the calling thread: while it lives, linear_cuda sends products of at least
// options().min_tokens tokens here, and moe_chunk_cuda runs its routed experts through
// expert_groups.cuh from options().min_expert_tokens tokens. Without one (the default), every
// product takes the reference path: that is the `reference_order` mode the bit-exact tests use.
// A TensorCoreGemm serves one thread and one stream at a time.
//
// No device code here: .cc files may include this header.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "backend/cuda/device_array.h"
#include "backend/cuda/device_weights.h"
#include "backend/cuda/f16_convert.cuh"

struct cublasContext;  // cublas_api.h: cublasHandle_t is cublasContext*

namespace magnetar::gpu {

struct TensorCoreOptions {
  // Dense products (linear_cuda) with at least this many tokens take the tensor-core path. Below
  // it, a GEMV-style kernel that reads the weights once is as fast and needs no scratch.
  int64_t min_tokens = 32;
  // Chunks with at least this many tokens run their routed experts as grouped GEMMs. Each active
  // expert's three matrices are decoded to f16 (≈50 MB written and read back for a Flash expert),
  // which pays when an expert has enough tokens; re-measure once the decode GEMV is fast.
  int64_t min_expert_tokens = 32;
  // Bytes of f16 weight scratch: dense slices and groups of experts are sized to fit. 512 MiB
  // holds 15 Flash experts' gate and up matrices, enough to fill the GPU in one batched GEMM.
  size_t weight_scratch_bytes = size_t{512} << 20;
};

class TensorCoreGemm {
 public:
  // Creates the cuBLAS handle on the current device. Throws std::runtime_error when cuBLAS cannot
  // be initialized, std::invalid_argument for options outside their ranges.
  explicit TensorCoreGemm(const TensorCoreOptions& options = {});
  ~TensorCoreGemm();
  TensorCoreGemm(const TensorCoreGemm&) = delete;
  TensorCoreGemm& operator=(const TensorCoreGemm&) = delete;

  const TensorCoreOptions& options() const { return options_; }

  // y[t · y_stride + n] = Σ_k W[n][k] · x[t · x_stride + k] for t < n_tokens, n < w.rows, on
  // tensor cores (any n_tokens ≥ 1; linear_cuda applies the threshold). Same argument rules as
  // linear_cuda; y_stride ≥ w.rows. Throws std::invalid_argument for bad shapes or types,
  // std::runtime_error for CUDA or cuBLAS failures.
  void linear(const DeviceMatrix& w, const float* x, int64_t x_stride, int64_t n_tokens, float* y,
              int64_t y_stride, cudaStream_t stream);

  // Building blocks of the grouped experts (expert_groups.cu).

  // The cuBLAS handle, bound to `stream`, in device pointer mode (alpha and beta in device memory).
  cublasContext* cublas(cudaStream_t stream);
  // The f16 weight scratch: options().weight_scratch_bytes / 2 elements.
  uint16_t* weight_scratch() { return weight_scratch_.data(); }
  int64_t weight_scratch_elements() const { return static_cast<int64_t>(weight_scratch_.size()); }
  // Device scales: slot 0 is used by linear(), 1 and 2 by the grouped experts.
  F16Scale* scale(int slot) { return scales_.data() + slot; }

 private:
  TensorCoreOptions options_;
  cublasContext* handle_ = nullptr;
  DeviceArray<uint16_t> weight_scratch_;
  DeviceArray<uint16_t> x16_;  // activations of linear(), grown as needed
  DeviceArray<F16Scale> scales_;
};

// Installs `gemm` as the calling thread's tensor-core path for the lifetime of the object, and
// restores the previous one (usually none) afterwards. nullptr installs none: reference order.
class ScopedTensorCoreGemm {
 public:
  explicit ScopedTensorCoreGemm(TensorCoreGemm* gemm);
  ~ScopedTensorCoreGemm();
  ScopedTensorCoreGemm(const ScopedTensorCoreGemm&) = delete;
  ScopedTensorCoreGemm& operator=(const ScopedTensorCoreGemm&) = delete;

 private:
  TensorCoreGemm* previous_;
};

// The calling thread's tensor-core path, or nullptr for reference order.
TensorCoreGemm* current_tensor_core_gemm();

// Makes `array` hold at least `count` elements, like ensure_size (device_array.h), but first waits
// for `stream`, whose queued kernels may still use the old memory.
template <typename T>
T* grow_after(DeviceArray<T>& array, size_t count, cudaStream_t stream) {
  if (array.size() < count) {
    MAGNETAR_CUDA_CHECK(cudaStreamSynchronize(stream));
    ensure_size(array, count);
  }
  return array.data();
}

}  // namespace magnetar::gpu
