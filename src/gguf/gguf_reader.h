// Reading GGUF v3 files.
//
// A GgufFile is the validated table of contents of one file: version, metadata records, tensor
// directory and where each tensor's bytes are. Opening maps the file and checks *everything*
// before anything is used: magic, version, record counts, every string and array length, value
// types, array nesting, tensor names, dimensions, types, the alignment, data offsets and sizes
// (inside the file, aligned, not overlapping). A corrupt or hostile file is rejected with one
// GgufError line naming the field and byte offset; it can never make the reader read out of bounds
// or allocate without limit (tests/fuzz runs libFuzzer on exactly this code).
//
// What the file *means* (is it a DeepSeek V4 model, are the shapes right) is checked elsewhere:
// see model/tensor_layout.h.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "gguf/gguf_error.h"
#include "gguf/gguf_value.h"
#include "gguf/mapped_file.h"
#include "quant/ggml_type.h"

namespace magnetar::gguf {

inline constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as a little-endian u32
inline constexpr uint32_t kGgufVersion = 3;
inline constexpr uint64_t kDefaultAlignment = 32;
inline constexpr uint32_t kMaxDims = 4;          // ggml's GGML_MAX_DIMS
inline constexpr uint32_t kMaxArrayNesting = 8;  // deeper arrays are rejected (as ds4 does)

struct TensorInfo {
  std::string name;
  quant::GgmlType type = quant::GgmlType::kF32;
  std::vector<int64_t> ne;  // dimensions, fastest-varying first (ggml order)
  uint64_t offset = 0;      // relative to the start of the data section
  uint64_t size = 0;        // bytes of data
  uint64_t record_pos = 0;  // file position of this tensor's info record (for messages)

  int64_t n_elements() const;
  // Number of rows: the product of ne[1..]; a 1-D tensor is one row.
  int64_t n_rows() const;
};

class GgufFile {
 public:
  // Maps and validates a file. Throws GgufError.
  static GgufFile open(const std::filesystem::path& path);

  // Validates an in-memory image; `bytes` must outlive the returned object. `origin` names the
  // image in error messages.
  static GgufFile parse(std::span<const uint8_t> bytes, std::string origin);

  const std::string& origin() const { return origin_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // DATA_POS: start of tensor data
  uint64_t file_size() const { return bytes_.size(); }

  const GgufMetadata& metadata() const { return metadata_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find_tensor(std::string_view name) const;

  // The bytes of a tensor, inside the mapping (32-byte aligned relative to the file, not more).
  std::span<const uint8_t> tensor_data(const TensorInfo& tensor) const {
    return bytes_.subspan(data_offset_ + tensor.offset, tensor.size);
  }
  // The whole file image.
  std::span<const uint8_t> bytes() const { return bytes_; }
  // The mapping, or nullptr for a parsed in-memory image.
  const MappedFile* mapping() const { return mapping_.get(); }

  GgufFile(GgufFile&&) = default;
  GgufFile& operator=(GgufFile&&) = default;
  GgufFile(const GgufFile&) = delete;  // the name index points into this object's tensors
  GgufFile& operator=(const GgufFile&) = delete;

 private:
  GgufFile() = default;
  void build_index();

  std::shared_ptr<MappedFile> mapping_;
  std::span<const uint8_t> bytes_;
  std::string origin_;
  uint32_t version_ = 0;
  uint64_t alignment_ = kDefaultAlignment;
  uint64_t data_offset_ = 0;
  GgufMetadata metadata_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string_view, size_t> index_;  // views into tensors_[i].name

  friend class GgufParser;
};

}  // namespace magnetar::gguf
