#include "gguf/gguf_reader.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <unordered_set>

namespace magnetar::gguf {

int64_t TensorInfo::n_elements() const {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;
  return n;
}

int64_t TensorInfo::n_rows() const {
  int64_t n = 1;
  for (size_t i = 1; i < ne.size(); ++i) n *= ne[i];
  return n;
}

// Walks the header with a cursor that checks every read against the end of the image. All
// validation of the container lives here; GgufFile only holds the result.
class GgufParser {
 public:
  GgufParser(std::span<const uint8_t> bytes, std::string origin)
      : bytes_(bytes), origin_(std::move(origin)) {}

  void parse_into(GgufFile& file) {
    file.bytes_ = bytes_;
    file.origin_ = origin_;
    parse_header(file);
    parse_metadata(file);
    parse_tensor_infos(file);
    place_tensors(file);
    file.build_index();
  }

 private:
  [[noreturn]] void fail(const std::string& what, uint64_t at) const {
    throw GgufError(origin_, what, at);
  }

  uint64_t remaining() const { return bytes_.size() - pos_; }

  void need(uint64_t n, const char* what) const {
    if (n > remaining()) {
      fail(std::string("truncated file: ") + what + " needs " + std::to_string(n) +
               " bytes, only " + std::to_string(remaining()) + " left",
           pos_);
    }
  }

  template <typename T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  std::string read_string(const char* what) {
    uint64_t at = pos_;
    uint64_t len = read<uint64_t>(what);
    if (len > remaining()) {
      fail(std::string(what) + ": string length " + std::to_string(len) + " exceeds the " +
               std::to_string(remaining()) + " bytes left in the file",
           at);
    }
    std::string s(reinterpret_cast<const char*>(bytes_.data() + pos_), len);
    pos_ += len;
    return s;
  }

  GgufType read_value_type(const std::string& key) {
    uint64_t at = pos_;
    uint32_t t = read<uint32_t>("value type");
    if (t > kMaxGgufType) fail("key '" + key + "': unknown value type " + std::to_string(t), at);
    return static_cast<GgufType>(t);
  }

  void parse_header(GgufFile& file) {
    uint32_t magic = read<uint32_t>("magic");
    if (magic != kGgufMagic) fail("not a GGUF file (bad magic)", 0);
    file.version_ = read<uint32_t>("version");
    if (file.version_ != kGgufVersion) {
      fail("unsupported GGUF version " + std::to_string(file.version_) + " (only 3 is supported)",
           4);
    }
    tensor_count_ = read<uint64_t>("tensor count");
    kv_count_ = read<uint64_t>("metadata count");
    // Each record occupies a minimum number of bytes, so a count larger than the file can hold
    // is corrupt; rejecting it here also bounds every allocation below.
    constexpr uint64_t kMinKvBytes = 8 + 4 + 1;              // empty key, type, 1-byte value
    constexpr uint64_t kMinTensorBytes = 8 + 4 + 8 + 4 + 8;  // empty name, 1 dim, type, offset
    if (kv_count_ > remaining() / kMinKvBytes) {
      fail("metadata count " + std::to_string(kv_count_) + " cannot fit in the file", 16);
    }
    if (tensor_count_ > remaining() / kMinTensorBytes) {
      fail("tensor count " + std::to_string(tensor_count_) + " cannot fit in the file", 8);
    }
  }

  // Reads one value of `type`; arrays recurse up to kMaxArrayNesting levels.
  GgufValue read_value(GgufType type, const std::string& key, uint32_t depth) {
    switch (type) {
      case GgufType::kUint8:
        return GgufValue::u8(read<uint8_t>("u8 value"));
      case GgufType::kInt8:
        return GgufValue::i8(read<int8_t>("i8 value"));
      case GgufType::kUint16:
        return GgufValue::u16(read<uint16_t>("u16 value"));
      case GgufType::kInt16:
        return GgufValue::i16(read<int16_t>("i16 value"));
      case GgufType::kUint32:
        return GgufValue::u32(read<uint32_t>("u32 value"));
      case GgufType::kInt32:
        return GgufValue::i32(read<int32_t>("i32 value"));
      case GgufType::kFloat32:
        return GgufValue::f32(read<float>("f32 value"));
      case GgufType::kUint64:
        return GgufValue::u64(read<uint64_t>("u64 value"));
      case GgufType::kInt64:
        return GgufValue::i64(read<int64_t>("i64 value"));
      case GgufType::kFloat64:
        return GgufValue::f64(read<double>("f64 value"));
      case GgufType::kBool: {
        uint64_t at = pos_;
        uint8_t b = read<uint8_t>("bool value");
        if (b > 1)
          fail("key '" + key + "': bool value " + std::to_string(b) + " is not 0 or 1", at);
        return GgufValue::boolean(b != 0);
      }
      case GgufType::kString:
        return GgufValue::string(read_string("string value"));
      case GgufType::kArray:
        return read_array(key, depth + 1);
    }
    fail("key '" + key + "': unknown value type", pos_);
  }

  GgufValue read_array(const std::string& key, uint32_t depth) {
    uint64_t at = pos_;
    if (depth > kMaxArrayNesting) {
      fail("key '" + key + "': arrays nested deeper than " + std::to_string(kMaxArrayNesting), at);
    }
    GgufType elem = read_value_type(key);
    uint64_t count_at = pos_;
    uint64_t count = read<uint64_t>("array length");
    size_t elem_size = gguf_scalar_size(elem);
    // Strings take at least 8 bytes and arrays at least 12; the count must fit in what is left.
    uint64_t min_elem = elem_size ? elem_size : (elem == GgufType::kString ? 8 : 12);
    if (count > remaining() / min_elem) {
      fail("key '" + key + "': array length " + std::to_string(count) + " of " +
               std::string(gguf_type_name(elem)) + " exceeds the rest of the file",
           count_at);
    }
    if (elem_size != 0) {
      std::vector<uint8_t> packed(bytes_.data() + pos_, bytes_.data() + pos_ + count * elem_size);
      if (elem == GgufType::kBool) {
        for (uint64_t i = 0; i < count; ++i) {
          if (packed[i] > 1) fail("key '" + key + "': bool array element is not 0 or 1", pos_ + i);
        }
      }
      pos_ += count * elem_size;
      return GgufValue::packed_array(elem, std::move(packed));
    }
    if (elem == GgufType::kString) {
      std::vector<std::string> strings;
      strings.reserve(count);
      for (uint64_t i = 0; i < count; ++i) strings.push_back(read_string("array string"));
      return GgufValue::string_array(std::move(strings));
    }
    // An array of arrays: each element is an array body (element type, count, values) without a
    // type tag of its own.
    std::vector<GgufValue> items;
    items.reserve(count);
    for (uint64_t i = 0; i < count; ++i) items.push_back(read_array(key, depth + 1));
    return GgufValue::nested_array(elem, std::move(items));
  }

  void parse_metadata(GgufFile& file) {
    std::unordered_set<std::string> seen;
    for (uint64_t i = 0; i < kv_count_; ++i) {
      uint64_t at = pos_;
      std::string key = read_string("metadata key");
      if (key.empty()) fail("metadata record " + std::to_string(i) + " has an empty key", at);
      if (!seen.insert(key).second) fail("duplicate metadata key '" + key + "'", at);
      GgufType type = read_value_type(key);
      uint64_t value_at = pos_;
      GgufValue value = read_value(type, key, 0);
      if (key == "general.alignment") check_alignment(file, value, value_at);
      file.metadata_.set(key, std::move(value));
    }
  }

  // ggml requires a power of two; a non-u32 value is an error rather than silently ignored (ds4
  // falls back to 32, which would misplace every tensor of a file that meant something else).
  void check_alignment(GgufFile& file, const GgufValue& value, uint64_t at) {
    if (value.type() != GgufType::kUint32) {
      fail("general.alignment must be u32, found " + std::string(gguf_type_name(value.type())), at);
    }
    uint64_t align = *value.as_u64();
    if (align < 8 || (align & (align - 1)) != 0) {
      fail("general.alignment " + std::to_string(align) + " is not a power of two >= 8", at);
    }
    file.alignment_ = align;
  }

  void parse_tensor_infos(GgufFile& file) {
    std::unordered_set<std::string> seen;
    file.tensors_.reserve(tensor_count_);
    for (uint64_t i = 0; i < tensor_count_; ++i) {
      TensorInfo t;
      t.record_pos = pos_;
      t.name = read_string("tensor name");
      const std::string where = "tensor '" + t.name + "'";
      if (t.name.empty()) fail("tensor " + std::to_string(i) + " has an empty name", t.record_pos);
      if (!seen.insert(t.name).second) fail("duplicate tensor name '" + t.name + "'", t.record_pos);
      uint64_t dims_at = pos_;
      uint32_t n_dims = read<uint32_t>("tensor dimension count");
      if (n_dims < 1 || n_dims > kMaxDims) {
        fail(where + ": dimension count " + std::to_string(n_dims) + " is not in 1.." +
                 std::to_string(kMaxDims),
             dims_at);
      }
      uint64_t n_elements = 1;
      for (uint32_t d = 0; d < n_dims; ++d) {
        uint64_t at = pos_;
        uint64_t ne = read<uint64_t>("tensor dimension");
        if (ne == 0 || ne > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
            n_elements > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / ne) {
          fail(where + ": dimension " + std::to_string(d) + " = " + std::to_string(ne) +
                   " is zero or overflows the element count",
               at);
        }
        n_elements *= ne;
        t.ne.push_back(static_cast<int64_t>(ne));
      }
      uint64_t type_at = pos_;
      uint32_t type_id = read<uint32_t>("tensor type");
      const quant::TypeInfo* info = quant::find_type(type_id);
      if (info == nullptr)
        fail(where + ": unknown ggml type id " + std::to_string(type_id), type_at);
      t.type = info->type;
      if (t.ne[0] % info->block_elems != 0) {
        fail(where + ": row length " + std::to_string(t.ne[0]) + " is not a multiple of the " +
                 std::string(info->name) + " block size " + std::to_string(info->block_elems),
             type_at);
      }
      // n_elements <= 2^63 and block_bytes <= 292 with block_elems >= 1: compute without overflow.
      uint64_t blocks = n_elements / static_cast<uint64_t>(info->block_elems);
      if (blocks >
          std::numeric_limits<uint64_t>::max() / static_cast<uint64_t>(info->block_bytes)) {
        fail(where + ": byte size overflows", type_at);
      }
      t.size = blocks * static_cast<uint64_t>(info->block_bytes);
      uint64_t off_at = pos_;
      t.offset = read<uint64_t>("tensor data offset");
      if (t.offset % file.alignment_ != 0) {
        fail(where + ": data offset " + std::to_string(t.offset) + " is not a multiple of the " +
                 std::to_string(file.alignment_) + "-byte alignment",
             off_at);
      }
      file.tensors_.push_back(std::move(t));
    }
  }

  void place_tensors(GgufFile& file) {
    uint64_t align = file.alignment_;
    uint64_t data_pos = pos_ + (align - pos_ % align) % align;
    if (file.tensors_.empty()) data_pos = std::min<uint64_t>(data_pos, bytes_.size());
    if (data_pos > bytes_.size()) {
      fail("truncated file: data section starts at " + std::to_string(data_pos) +
               " past the end (" + std::to_string(bytes_.size()) + " bytes)",
           pos_);
    }
    file.data_offset_ = data_pos;
    uint64_t data_bytes = bytes_.size() - data_pos;
    for (const TensorInfo& t : file.tensors_) {
      if (t.offset > data_bytes || t.size > data_bytes - t.offset) {
        fail("tensor '" + t.name + "': data [" + std::to_string(data_pos + t.offset) + ", " +
                 std::to_string(data_pos + t.offset + t.size) + ") extends past the end of file (" +
                 std::to_string(bytes_.size()) + " bytes)",
             t.record_pos);
      }
    }
    std::vector<const TensorInfo*> by_offset;
    by_offset.reserve(file.tensors_.size());
    for (const TensorInfo& t : file.tensors_) by_offset.push_back(&t);
    std::sort(by_offset.begin(), by_offset.end(),
              [](const TensorInfo* a, const TensorInfo* b) { return a->offset < b->offset; });
    for (size_t i = 1; i < by_offset.size(); ++i) {
      const TensorInfo* prev = by_offset[i - 1];
      const TensorInfo* cur = by_offset[i];
      if (prev->offset + prev->size > cur->offset) {
        fail("tensor '" + cur->name + "' overlaps tensor '" + prev->name + "'", cur->record_pos);
      }
    }
  }

  std::span<const uint8_t> bytes_;
  std::string origin_;
  uint64_t pos_ = 0;
  uint64_t tensor_count_ = 0;
  uint64_t kv_count_ = 0;
};

GgufFile GgufFile::open(const std::filesystem::path& path) {
  auto mapping = std::make_shared<MappedFile>(path);
  GgufFile file = parse(mapping->bytes(), path.string());
  file.mapping_ = std::move(mapping);
  return file;
}

GgufFile GgufFile::parse(std::span<const uint8_t> bytes, std::string origin) {
  GgufFile file;
  GgufParser(bytes, std::move(origin)).parse_into(file);
  return file;
}

void GgufFile::build_index() {
  index_.clear();
  index_.reserve(tensors_.size());
  for (size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
}

const TensorInfo* GgufFile::find_tensor(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace magnetar::gguf
