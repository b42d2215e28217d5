// Conversions to IEEE binary16 ("f16") for the tensor-core products of gemm_tc.cuh and
// expert_groups.cuh: stored weights, and float32 activations.
//
// Weights are decoded exactly as the CPU decodes them (weight_decode.cuh), then rounded once to
// the nearest f16: a relative error of at most 2^-11, or an absolute one of at most 2^-25 for
// values under 2^-14 (f16 subnormals). Values beyond the f16 range (±65504) would become
// infinities; no trained weight comes near it (a Q8_0 block would need an f16 scale above 515).
//
// Activations have no such bound (the hyper-connection mixer multiplies the raw residual stream),
// so they are scaled first by a power of two chosen on the device from their largest magnitude,
// which lands in [2^14, 2^15): nothing overflows, nothing that matters underflows, and since the
// scale is a power of two it changes no bit of the product once undone (the GEMM's alpha is its
// inverse). The scale lives in device memory (F16Scale), so no value travels to the host.
//
// f16 data is passed as uint16_t (the raw binary16 bits), so that plain C++ translation units may
// include this header; it has no device code.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "backend/cuda/device_weights.h"

namespace magnetar::gpu {

// A power-of-two activation scale in device memory. `inverse` and `zero` are laid out for cuBLAS's
// device pointer mode: alpha = &inverse, beta = &zero.
struct F16Scale {
  uint32_t amax_bits;  // bits of the largest |value| seen (an order-preserving key for floats)
  float scale;         // 2^k, with the largest |value| · 2^k in [2^14, 2^15); 1 for 0, inf, NaN
  float inverse;       // 2^-k
  float zero;          // 0.0f
};

// Rows [first_row, first_row + n_rows) of `w`, decoded and rounded to f16, into
// dst[(r - first_row) · w.cols + k]. Throws std::invalid_argument for a type without a GPU decoder,
// for columns that are not a multiple of 4 and for a row range outside the matrix.
void decode_rows_f16_cuda(const DeviceMatrix& w, int64_t first_row, int64_t n_rows, uint16_t* dst,
                          cudaStream_t stream);

// The whole matrix of each expert ids[i] (i < n_experts; `ids` in device memory) of `w`, decoded
// and rounded to f16, into dst + i · expert_stride (row-major, w.shape.cols per row). Same errors
// as decode_rows_f16_cuda.
void decode_experts_f16_cuda(const DeviceExperts& w, const int32_t* ids, int64_t n_experts,
                             uint16_t* dst, int64_t expert_stride, cudaStream_t stream);

// Sets *scale (device memory) from the largest magnitude of n_rows rows of `cols` floats, row r
// starting at x + r · x_stride.
void measure_f16_scale_cuda(const float* x, int64_t x_stride, int64_t n_rows, int64_t cols,
                            F16Scale* scale, cudaStream_t stream);

// dst[r · cols + c] = f16(x[r · x_stride + c] · scale->scale), rounded to nearest.
void rows_to_f16_cuda(const float* x, int64_t x_stride, int64_t n_rows, int64_t cols,
                      const F16Scale* scale, uint16_t* dst, cudaStream_t stream);

}  // namespace magnetar::gpu
