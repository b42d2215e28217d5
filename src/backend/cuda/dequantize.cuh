// Weight dequantization on the GPU: the CUDA counterpart of quant::dequantize_row.
//
// Decodes F32, F16, BF16, Q8_0, Q2_K, Q4_K and IQ2_XXS data (shared/spec/gguf.md §4) that lies in
// device memory into f32 values in device memory. The results are bit-identical to the CPU
// reference decoders in src/quant/dequantize.cc, so a tensor decoded on either side has the same
// bits: every element is computed with the same float operations in the same order, and f16 fields
// are decoded exactly, NaN payloads included.
//
// This is the simple, load-time path (one thread per output value); the inference kernels decode
// their weights inside the GEMVs instead (shared/spec/cuda-design.md §2).
//
// This header has no device code, so plain C++ translation units may include it.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "quant/ggml_type.h"

namespace magnetar::gpu {

// Enqueues on `stream` the decoding of n_elements values of `type` (consecutive blocks, e.g. the
// rows of a tensor) from `device_src` to `device_dst` and returns without waiting. `device_src`
// must be 2-byte aligned (every row of a GGUF tensor is) and `device_dst` 4-byte aligned.
//
// Throws std::invalid_argument for another type, for a count that is not a whole number of blocks
// and for misaligned pointers, before anything is enqueued; std::runtime_error (cuda_check.h) when
// the launch fails. The first IQ2_XXS call on a device uploads the IQ2_XXS tables to it
// synchronously (weight_decode.cuh), so it must not happen while a stream is being captured into a
// CUDA graph.
void dequantize_rows_cuda(quant::GgmlType type, const void* device_src, float* device_dst,
                          int64_t n_elements, cudaStream_t stream);

}  // namespace magnetar::gpu
