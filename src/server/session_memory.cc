#include "server/session_memory.h"

#include <fstream>
#include <sstream>
#include <string>

namespace magnetar::server {

uint64_t session_state_bytes(const model::ModelConfig& config, int64_t context) {
  const uint64_t ctx = static_cast<uint64_t>(context);
  uint64_t floats = 0;
  for (uint32_t layer = 0; layer < config.n_layer; ++layer) {
    floats += static_cast<uint64_t>(config.sliding_window) * config.head_dim;
    const uint32_t ratio = config.ratio(layer);
    if (ratio == 0) continue;
    // Compressed rows, plus the partial block (and the previous one for ratio 4) of kv and score.
    floats += (ctx / ratio + 1) * config.head_dim;
    floats += 4ull * ratio * config.compressor_width(layer);
    if (ratio == 4) {
      floats += (ctx / 4 + 1) * config.indexer_head_dim;
      floats += 4ull * 4 * config.indexer_compressor_width();
    }
  }
  return floats * sizeof(float) + static_cast<uint64_t>(config.n_vocab) * sizeof(float);
}

std::optional<uint64_t> available_memory_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line)) {
    if (!line.starts_with("MemAvailable:")) continue;
    std::istringstream fields(line.substr(13));
    uint64_t kib = 0;
    if (fields >> kib) return kib * 1024;
  }
  return std::nullopt;
}

}  // namespace magnetar::server
