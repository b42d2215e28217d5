// The values synthetic weights are drawn from, and the code that fills one chunk of a tensor.
//
// Random weights must keep a deep network finite and non-degenerate, not model anything: matrices
// are N(0, 1/fan_in) (so a projection of a unit-RMS vector has unit RMS; output projections are
// scaled down further because they add into the residual stream), norm weights are near 1, the
// hyper-connection mixers are small so Sinkhorn sees moderate logits, and the hash-routing table
// maps each token to distinct experts.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "model/model_config.h"
#include "model/tensor_layout.h"
#include "quant/ggml_type.h"
#include "synth/synth_preset.h"

namespace magnetar::synth {

struct Distribution {
  enum class Kind { kNormal, kTokenMap };
  Kind kind = Kind::kNormal;
  float mean = 0.0f;
  float stddev = 1.0f;
};

Distribution distribution_for(const model::ExpectedTensor& tensor,
                              const model::ModelConfig& config);

// A unit of work: rows [first_row, first_row + n_rows) of one tensor. Rows run over all
// dimensions past ne[0]; a 3-D expert tensor is split at expert boundaries, one expert per chunk,
// because IQ2_XXS importance is computed per expert matrix.
struct Chunk {
  size_t tensor = 0;
  int64_t first_row = 0;
  int64_t n_rows = 0;
  uint64_t index = 0;  // chunk number within its tensor (seeds its random stream)
};

// Splits a tensor of shape `ne` into chunks. Boundaries depend on the shape alone, so a quantized
// model and its f32 twin draw identical values.
std::vector<Chunk> split_into_chunks(size_t tensor, const std::vector<int64_t>& ne);

struct ChunkRequest {
  const model::ExpectedTensor* tensor;
  quant::GgmlType type;
  Distribution dist;
  Encoding encoding;
  uint64_t seed;
  Chunk chunk;
};

// Produces the stored bytes of one chunk into `out` (resized as needed). `scratch` is reused
// between calls by the same thread.
void generate_chunk(const ChunkRequest& request, std::vector<uint8_t>& out,
                    std::vector<float>& scratch);

}  // namespace magnetar::synth
