// The one exception type of the GGUF module.
//
// Every problem found in a file (or while writing one) is reported as a single line that names
// the file, the field and the byte offset, e.g.
//   "model.gguf: tensor info 'blk.0.attn_q_a.weight': data [1024, 5120) extends past end of file
//    (4096 bytes) [at byte 1234]"
// so that a user can tell a truncated download from a wrong model.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace magnetar::gguf {

class GgufError : public std::runtime_error {
 public:
  GgufError(const std::string& origin, const std::string& what, uint64_t offset)
      : std::runtime_error(origin + ": " + what + " [at byte " + std::to_string(offset) + "]"),
        offset_(offset) {}
  explicit GgufError(const std::string& message) : std::runtime_error(message), offset_(0) {}

  uint64_t offset() const { return offset_; }

 private:
  uint64_t offset_;
};

}  // namespace magnetar::gguf
