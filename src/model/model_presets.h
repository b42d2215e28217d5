// Named model shapes: the published DeepSeek V4 models and the tiny synthetic test model.
#pragma once

#include <optional>
#include <string_view>
#include <vector>

#include "model/model_config.h"

namespace magnetar::model {

// DeepSeek V4 Flash: 284B parameters, 43 layers (model.md §1.1).
ModelConfig flash_config();
// DeepSeek V4 Pro: 61 layers, D = 7168, 384 experts.
ModelConfig pro_config();
// A few-MB model with every layer kind of Flash: window-only, ratio-4 with indexer, ratio-128,
// hash-routed and biased-routed layers, and an MTP block. It keeps the real vocabulary (so the
// real tokenizer works) and every constant that carries meaning rather than size (gguf.md §7).
// A window of 8 and indexer top-k of 8 make short sequences wrap the ring and drop rows.
ModelConfig tiny_config();

// "flash", "pro" or "tiny".
std::optional<ModelConfig> config_by_name(std::string_view name);

}  // namespace magnetar::model
