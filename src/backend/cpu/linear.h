// Matrix products of stored weights with float32 activations, the CPU reference way.
//
// Each weight row is decoded to float32 exactly (quant::dequantize_row) and multiplied with every
// activation row of the chunk, so the result is the float32 product of the weights *as stored*:
// no activation quantization happens here (the official FP8 activation rounding is a separate,
// optional step: act_quant_fp8). Decoding a row once per chunk rather than once per token is what
// makes prefill of a few hundred tokens practical on the reference path.
#pragma once

#include <cstdint>

#include "backend/cpu/thread_pool.h"
#include "model/model_weights.h"

namespace magnetar::cpu {

// y[t·rows + n] = Σ_k W[n][k] · x[t·cols + k] for t < n_tokens.
void linear(ThreadPool& pool, const model::WeightMatrix& w, const float* x, int64_t n_tokens,
            float* y);

// Rows [first, first + count) of `w` as a matrix of their own (grouped projections).
model::WeightMatrix row_slice(const model::WeightMatrix& w, int64_t first, int64_t count);

// The official model rounds the input of every FP8/FP4 linear layer to FP8 E4M3 in blocks of 128
// values with a power-of-two scale (model.md §3.3, §3.5). Applies that rounding to each of the
// n_tokens rows of `x` (length cols) into `out` when `enabled`, copies otherwise.
void act_quant_fp8(const float* x, int64_t n_tokens, int64_t cols, bool enabled, float* out);

}  // namespace magnetar::cpu
