// Writing GGUF v3 files.
//
// The writer lays the whole file out first (header, metadata, tensor directory, every tensor's
// aligned offset), then lets any number of threads fill tensor bytes at their final positions.
// That is what makes `magnetar synth` write 80+ GB files at memory speed: nothing is buffered
// beyond the block being written, and no thread waits for another. The last point needs care:
// pwrite() to one file is serialized by the kernel's per-inode lock, so the writer reserves the
// whole file with fallocate() and has threads copy into a shared mapping instead. The reservation
// also turns a full disk into an error at creation time; without it, a store into a mapped hole on
// a full file system would kill the process with SIGBUS. Where fallocate is unsupported the writer
// falls back to pwrite.
//
// Files are written as `<path>.partial` and renamed into place by commit(), after checking that
// every byte of every tensor was written. A failure (disk full, a thrown exception, a killed
// process) never leaves a truncated file under the final name; the destructor removes the
// partial file unless commit() succeeded.
//
// The layout follows ds4's writers (gguf.md §1.6): tensors in the order given, each at the next
// multiple of the alignment, and every tensor, the last one included, zero-padded to it.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "gguf/gguf_reader.h"
#include "gguf/gguf_value.h"
#include "quant/ggml_type.h"

namespace magnetar::gguf {

struct TensorSpec {
  std::string name;
  quant::GgmlType type;
  std::vector<int64_t> ne;  // ggml order, fastest-varying first
};

// The encoded header (magic .. tensor directory) followed by zero padding up to the data section,
// and the resulting tensor placement. Throws GgufError for specs that cannot be encoded (rows that
// are not whole blocks, too many dimensions, duplicate names).
struct EncodedHeader {
  std::vector<uint8_t> bytes;       // exactly data_offset bytes
  std::vector<TensorInfo> tensors;  // with offset and size filled in
  uint64_t alignment = kDefaultAlignment;
  uint64_t file_size = 0;  // data_offset + Σ align_up(size)
};
EncodedHeader encode_header(const GgufMetadata& metadata, const std::vector<TensorSpec>& tensors);

class GgufWriter {
 public:
  // Creates `<path>.partial` holding the header, sized to the final length. Fails early, before
  // writing anything, when the file system has less free space than the file needs.
  GgufWriter(std::filesystem::path path, const GgufMetadata& metadata,
             const std::vector<TensorSpec>& tensors);
  ~GgufWriter();
  GgufWriter(const GgufWriter&) = delete;
  GgufWriter& operator=(const GgufWriter&) = delete;

  const std::vector<TensorInfo>& tensors() const { return header_.tensors; }
  uint64_t data_offset() const { return header_.bytes.size(); }
  uint64_t file_size() const { return header_.file_size; }

  // Writes `data` into tensor `index` starting `offset` bytes into it. Thread-safe; each byte of a
  // tensor is to be written exactly once.
  void write(size_t index, uint64_t offset, std::span<const uint8_t> data);

  // Checks that every tensor is complete, flushes and renames the file into place.
  void commit();

 private:
  void fail_and_close(const std::string& why);  // closes, removes the partial file, throws
  void populate(uint64_t pos, uint64_t n);

  std::filesystem::path path_;
  std::filesystem::path partial_path_;
  EncodedHeader header_;
  int fd_ = -1;
  uint8_t* map_ = nullptr;  // the whole file, when space could be reserved
  bool committed_ = false;
  std::unique_ptr<std::atomic<uint64_t>[]> written_;  // bytes written per tensor
};

}  // namespace magnetar::gguf
