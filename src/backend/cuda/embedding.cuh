// The token embedding and the row gathers of the forward pass on the GPU. No device code here.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "backend/cuda/device_weights.h"

namespace magnetar::gpu {

// X[t][h] = decoded row tokens[t] of `table` for every one of the `streams` HC streams (model.md
// §4), X being [n_tokens][streams][table.cols]. Token ids must be valid rows (the backend checks
// them on the host first).
void embed_tokens_cuda(const DeviceMatrix& table, const int32_t* tokens, int64_t n_tokens,
                       int streams, float* X, cudaStream_t stream);

// X[t][h] += v[t] for every one of the `streams` HC streams, X being [n_tokens][streams][dim] and
// v [n_tokens][dim] (the MTP block's input, model.md §9.1).
void add_to_streams_cuda(const float* v, int64_t n_tokens, int streams, int64_t dim, float* X,
                         cudaStream_t stream);

// dst[i] = src[rows[i]] for i < n_rows, rows of `width` floats.
void gather_rows_cuda(const float* src, const int32_t* rows, int64_t n_rows, int64_t width,
                      float* dst, cudaStream_t stream);

}  // namespace magnetar::gpu
