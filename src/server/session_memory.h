// How much memory a live session's model state needs at most, so that `--parallel N` can be
// refused up front instead of failing mid-generation (issue 5: "bounded by memory").
//
// Per layer a session holds the window ring (sliding_window rows of head_dim floats); compressed
// layers add one row of head_dim floats per `ratio` tokens and the compressor's partial blocks;
// ratio-4 layers add the indexer's rows (indexer_head_dim floats per 4 tokens) and its state
// (cpu/sequence_state.h). At the full context this is the bound the CPU backend's growing vectors
// reach. Backends that keep state elsewhere (CUDA device memory) size it themselves.
#pragma once

#include <cstdint>
#include <optional>

#include "model/model_config.h"

namespace magnetar::server {

uint64_t session_state_bytes(const model::ModelConfig& config, int64_t context);

// MemAvailable from /proc/meminfo, in bytes; nullopt where it cannot be read.
std::optional<uint64_t> available_memory_bytes();

}  // namespace magnetar::server
