// Writes float32 arrays as NumPy .npy files (format version 1.0), the interchange format of the
// logits oracle tests: numpy.load() reads them directly.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <vector>

namespace magnetar::cli {

// Writes `data` (row-major, C order) with the given shape. Throws std::runtime_error on I/O errors
// or when the shape does not match the data size.
void write_npy(const std::filesystem::path& path, std::span<const float> data,
               const std::vector<int64_t>& shape);

}  // namespace magnetar::cli
