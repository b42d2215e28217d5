// Random contents for synthetic weights, written straight into device memory (synthetic_weights.h).
// No device code here.
//
// Every value comes from a counter-based generator: element (or 8-byte word) i of a stream is
// SplitMix64 of (seed, stream, i), so the bytes do not depend on the launch shape and any range can
// be regenerated alone. The quantized formats are filled the way `magnetar synth --encode
// random-codes` fills them (synth/weight_init.h): random bits in every field, then the block scale
// (and the K-quants' minimum scale) overwritten with chosen f16 values.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace magnetar::gpu {

// Fills `bytes` bytes at `dst` (device memory, 8-byte aligned) with random bits.
void fill_random_bits_cuda(uint8_t* dst, size_t bytes, uint64_t seed, uint64_t stream,
                           cudaStream_t cuda_stream);

// Writes the f16 bit pattern `d_bits` at byte `d_offset` of each of `n_blocks` blocks of
// `block_bytes` bytes, and `dmin_bits` at `dmin_offset` unless that is negative.
void set_block_scales_cuda(uint8_t* dst, int64_t n_blocks, int block_bytes, int d_offset,
                           uint16_t d_bits, int dmin_offset, uint16_t dmin_bits,
                           cudaStream_t cuda_stream);

// n values uniform in [mean - half_width, mean + half_width), stored as float32 (`f16` false) or
// IEEE half (`f16` true; then `dst` must be 2-byte aligned, else 4).
void fill_uniform_cuda(void* dst, int64_t n, bool f16, float mean, float half_width, uint64_t seed,
                       uint64_t stream, cudaStream_t cuda_stream);

}  // namespace magnetar::gpu
