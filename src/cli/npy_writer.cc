#include "cli/npy_writer.h"

#include <fstream>
#include <stdexcept>
#include <string>

namespace magnetar::cli {

void write_npy(const std::filesystem::path& path, std::span<const float> data,
               const std::vector<int64_t>& shape) {
  int64_t count = 1;
  std::string dims;
  for (int64_t d : shape) {
    count *= d;
    dims += std::to_string(d) + ", ";
  }
  if (count != static_cast<int64_t>(data.size())) {
    throw std::runtime_error("write_npy: shape does not match " + std::to_string(data.size()) +
                             " values");
  }
  // "(3, 4)", but "(3,)" for one dimension: Python's tuple syntax.
  dims.resize(dims.size() - (shape.size() > 1 ? 2 : 1));
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  // Magic (6) + version (2) + length (2) + header + '\n' is padded to a multiple of 64 bytes.
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error(path.string() + ": cannot create");
  const char magic[] = {'\x93', 'N', 'U', 'M', 'P', 'Y', 1, 0};
  out.write(magic, sizeof magic);
  uint16_t len = static_cast<uint16_t>(header.size());
  out.write(reinterpret_cast<const char*>(&len), 2);
  out << header;
  out.write(reinterpret_cast<const char*>(data.data()),
            static_cast<std::streamsize>(data.size() * sizeof(float)));
  if (!out.flush()) throw std::runtime_error(path.string() + ": write failed");
}

}  // namespace magnetar::cli
