// A read-only memory mapping of a whole file.
//
// Model files are tens of gigabytes: they are mapped, never read into buffers, and tensors point
// into the mapping. MAP_SHARED is used so that several processes (or a GPU upload path that pins
// pages) share one page-cache copy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>

namespace magnetar::gguf {

class MappedFile {
 public:
  // Maps `path`; throws GgufError with the system's reason when the file cannot be opened, is not
  // a regular file, or cannot be mapped.
  explicit MappedFile(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::span<const uint8_t> bytes() const { return {data_, size_}; }
  const std::filesystem::path& path() const { return path_; }

  // Tells the kernel the whole range will be read soon (readahead for loading).
  void advise_will_need() const;

 private:
  std::filesystem::path path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace magnetar::gguf
