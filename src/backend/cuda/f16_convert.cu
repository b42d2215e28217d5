// The conversions to binary16 of f16_convert.cuh.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/f16_convert.cuh"
#include "backend/cuda/weight_decode.cuh"

namespace magnetar::gpu {
namespace {

constexpr int kThreads = 256;
// Grid-stride loops: enough blocks to fill an H100/H200 several times over, whatever the size.
constexpr int64_t kMaxBlocks = 4096;

unsigned blocks_for(int64_t n) {
  return static_cast<unsigned>(std::clamp<int64_t>((n + kThreads - 1) / kThreads, 1, kMaxBlocks));
}

__device__ __forceinline__ uint16_t f16_bits(float v) {
  return __half_as_ushort(__float2half_rn(v));
}

__device__ __forceinline__ uint32_t pack_f16(float lo, float hi) {
  return static_cast<uint32_t>(f16_bits(lo)) | static_cast<uint32_t>(f16_bits(hi)) << 16;
}

// Where a decode kernel reads and writes: one matrix (table == nullptr) or, per blockIdx.y, the
// expert table[ids[blockIdx.y]], whose rows go to dst + blockIdx.y · expert_stride.
struct DecodeJob {
  const uint8_t* base;
  const uint8_t* const* table;
  const int32_t* ids;
  int64_t first_row, n_rows, cols, row_bytes;
  uint16_t* dst;
  int64_t expert_stride;
  Iq2xxsTables tables;
};

// Each thread decodes 4 consecutive values of a row (cols is a multiple of 4) and stores them as
// one 8-byte word; consecutive threads cover consecutive words, so the stores are coalesced.
template <typename Decoder>
__global__ void __launch_bounds__(kThreads) decode_f16_kernel(DecodeJob job) {
  const uint8_t* w = job.table != nullptr ? job.table[job.ids[blockIdx.y]] : job.base;
  uint2* out = reinterpret_cast<uint2*>(job.dst + blockIdx.y * job.expert_stride);
  const int64_t quads_per_row = job.cols / 4;
  const int64_t n = job.n_rows * quads_per_row;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const int64_t row = i / quads_per_row;
    const int64_t k = (i % quads_per_row) * 4;
    const uint8_t* r = w + (job.first_row + row) * job.row_bytes;
    const float v0 = Decoder::at(r, k, job.tables);
    const float v1 = Decoder::at(r, k + 1, job.tables);
    const float v2 = Decoder::at(r, k + 2, job.tables);
    const float v3 = Decoder::at(r, k + 3, job.tables);
    out[i] = make_uint2(pack_f16(v0, v1), pack_f16(v2, v3));
  }
}

void launch_decode(quant::GgmlType type, const DecodeJob& job, int64_t n_matrices, const char* name,
                   cudaStream_t stream) {
  const dim3 grid(blocks_for(job.n_rows * (job.cols / 4)), static_cast<unsigned>(n_matrices));
  const bool known = with_row_decoder(type, [&]<typename Decoder>() {
    decode_f16_kernel<Decoder><<<grid, kThreads, 0, stream>>>(job);
  });
  if (!known) {
    throw std::invalid_argument(std::string("f16 decode: ") + (name ? name : "matrix") +
                                " has type " + std::string(quant::type_name(type)) +
                                ", which has no GPU decoder");
  }
  MAGNETAR_CUDA_CHECK(cudaGetLastError());
}

void check_decodable(const DeviceMatrix& shape, const void* dst, const char* what) {
  if (shape.cols % 4 != 0) {
    throw std::invalid_argument(std::string(what) + ": " + (shape.name ? shape.name : "matrix") +
                                " has " + std::to_string(shape.cols) +
                                " columns, not a multiple of 4");
  }
  if (reinterpret_cast<uintptr_t>(dst) % 8 != 0) {
    throw std::invalid_argument(std::string(what) + ": destination not 8-byte aligned");
  }
}

Iq2xxsTables tables_for(quant::GgmlType type) {
  return type == quant::GgmlType::kIQ2_XXS ? iq2xxs_device_tables() : Iq2xxsTables{};
}

// The largest |x| as float bits: fabsf clears the sign, so the bits of non-negative floats order
// like the values, and NaN (above every other pattern) wins. Integer atomics make the result
// independent of the order in which blocks finish.
__global__ void __launch_bounds__(kThreads)
    amax_kernel(const float* x, int64_t x_stride, int64_t n_rows, int64_t cols, uint32_t* out) {
  uint32_t m = 0;
  const int64_t n = n_rows * cols;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    m = max(m, __float_as_uint(fabsf(x[(i / cols) * x_stride + i % cols])));
  }
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    m = max(m, __shfl_xor_sync(0xffffffffu, m, offset));
  }
  if (threadIdx.x % 32 == 0 && m != 0) atomicMax(out, m);
}

// amax in [2^(e-127), 2^(e-126)) for a normal float of biased exponent e, so 2^(141-e) puts it in
// [2^14, 2^15). The exponent is clamped so that both the scale and its inverse stay normal floats;
// zero, infinities and NaN keep the scale 1 (the product then carries them as the CPU would).
__global__ void finalize_scale_kernel(F16Scale* s) {
  const uint32_t bits = s->amax_bits;
  const int e = static_cast<int>(bits >> 23);
  int k = 0;
  if (bits != 0 && e < 255) k = min(max(141 - e, -126), 126);
  s->scale = __uint_as_float(static_cast<uint32_t>(127 + k) << 23);
  s->inverse = __uint_as_float(static_cast<uint32_t>(127 - k) << 23);
  s->zero = 0.0f;
}

__global__ void __launch_bounds__(kThreads)
    to_f16_kernel(const float* x, int64_t x_stride, int64_t n_rows, int64_t cols, const F16Scale* s,
                  uint16_t* dst) {
  const float scale = s->scale;
  const int64_t n = n_rows * cols;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    dst[i] = f16_bits(x[(i / cols) * x_stride + i % cols] * scale);
  }
}

}  // namespace

void decode_rows_f16_cuda(const DeviceMatrix& w, int64_t first_row, int64_t n_rows, uint16_t* dst,
                          cudaStream_t stream) {
  check_decodable(w, dst, "decode_rows_f16_cuda");
  if (first_row < 0 || n_rows < 0 || first_row + n_rows > w.rows) {
    throw std::invalid_argument("decode_rows_f16_cuda: rows [" + std::to_string(first_row) + ", " +
                                std::to_string(first_row + n_rows) + ") outside the " +
                                std::to_string(w.rows) + " rows of the matrix");
  }
  if (n_rows == 0 || w.cols == 0) return;
  DecodeJob job{w.data, nullptr,     nullptr, first_row, n_rows,
                w.cols, w.row_bytes, dst,     0,         tables_for(w.type)};
  launch_decode(w.type, job, 1, w.name, stream);
}

void decode_experts_f16_cuda(const DeviceExperts& w, const int32_t* ids, int64_t n_experts,
                             uint16_t* dst, int64_t expert_stride, cudaStream_t stream) {
  check_decodable(w.shape, dst, "decode_experts_f16_cuda");
  if (expert_stride % 4 != 0 || expert_stride < w.shape.rows * w.shape.cols) {
    throw std::invalid_argument("decode_experts_f16_cuda: bad expert stride " +
                                std::to_string(expert_stride));
  }
  if (n_experts > 65535) throw std::invalid_argument("decode_experts_f16_cuda: too many experts");
  if (n_experts <= 0 || w.shape.rows == 0 || w.shape.cols == 0) return;
  DecodeJob job{nullptr,
                w.table,
                ids,
                0,
                w.shape.rows,
                w.shape.cols,
                w.shape.row_bytes,
                dst,
                expert_stride,
                tables_for(w.shape.type)};
  launch_decode(w.shape.type, job, n_experts, w.shape.name, stream);
}

void measure_f16_scale_cuda(const float* x, int64_t x_stride, int64_t n_rows, int64_t cols,
                            F16Scale* scale, cudaStream_t stream) {
  MAGNETAR_CUDA_CHECK(cudaMemsetAsync(&scale->amax_bits, 0, sizeof(uint32_t), stream));
  if (n_rows > 0 && cols > 0) {
    amax_kernel<<<blocks_for(n_rows * cols), kThreads, 0, stream>>>(x, x_stride, n_rows, cols,
                                                                    &scale->amax_bits);
    MAGNETAR_CUDA_CHECK(cudaGetLastError());
  }
  finalize_scale_kernel<<<1, 1, 0, stream>>>(scale);
  MAGNETAR_CUDA_CHECK(cudaGetLastError());
}

void rows_to_f16_cuda(const float* x, int64_t x_stride, int64_t n_rows, int64_t cols,
                      const F16Scale* scale, uint16_t* dst, cudaStream_t stream) {
  if (n_rows <= 0 || cols <= 0) return;
  to_f16_kernel<<<blocks_for(n_rows * cols), kThreads, 0, stream>>>(x, x_stride, n_rows, cols,
                                                                    scale, dst);
  MAGNETAR_CUDA_CHECK(cudaGetLastError());
}

}  // namespace magnetar::gpu
