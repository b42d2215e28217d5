#include "gguf/gguf_writer.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <unordered_set>

namespace magnetar::gguf {
namespace {

uint64_t align_up(uint64_t x, uint64_t a) { return x + (a - x % a) % a; }

class ByteSink {
 public:
  template <typename T>
  void put(T v) {
    uint8_t b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    out.insert(out.end(), b, b + sizeof(T));
  }
  void put_string(const std::string& s) {
    put<uint64_t>(s.size());
    out.insert(out.end(), s.begin(), s.end());
  }
  void put_array_body(const GgufValue& v) {
    const GgufValue::Array& a = *v.array();
    put<uint32_t>(static_cast<uint32_t>(a.element_type));
    put<uint64_t>(v.array_size());
    if (a.element_type == GgufType::kString) {
      for (const std::string& s : a.strings) put_string(s);
    } else if (a.element_type == GgufType::kArray) {
      for (const GgufValue& item : a.nested) put_array_body(item);
    } else {
      out.insert(out.end(), a.packed.begin(), a.packed.end());
    }
  }
  void put_value(const GgufValue& v) {
    switch (v.type()) {
      case GgufType::kUint8:
        put<uint8_t>(static_cast<uint8_t>(*v.as_u64()));
        break;
      case GgufType::kInt8:
        put<int8_t>(static_cast<int8_t>(*v.as_i64()));
        break;
      case GgufType::kUint16:
        put<uint16_t>(static_cast<uint16_t>(*v.as_u64()));
        break;
      case GgufType::kInt16:
        put<int16_t>(static_cast<int16_t>(*v.as_i64()));
        break;
      case GgufType::kUint32:
        put<uint32_t>(static_cast<uint32_t>(*v.as_u64()));
        break;
      case GgufType::kInt32:
        put<int32_t>(static_cast<int32_t>(*v.as_i64()));
        break;
      case GgufType::kUint64:
        put<uint64_t>(*v.as_u64());
        break;
      case GgufType::kInt64:
        put<int64_t>(*v.as_i64());
        break;
      case GgufType::kFloat32:
        put<float>(static_cast<float>(*v.as_f64()));
        break;
      case GgufType::kFloat64:
        put<double>(*v.as_f64());
        break;
      case GgufType::kBool:
        put<uint8_t>(*v.as_bool() ? 1 : 0);
        break;
      case GgufType::kString:
        put_string(*v.as_string());
        break;
      case GgufType::kArray:
        put_array_body(v);
        break;
    }
  }
  std::vector<uint8_t> out;
};

std::string errno_text() { return std::strerror(errno); }

}  // namespace

EncodedHeader encode_header(const GgufMetadata& metadata, const std::vector<TensorSpec>& tensors) {
  EncodedHeader h;
  if (const GgufValue* a = metadata.find("general.alignment")) {
    std::optional<uint64_t> v = a->as_u64();
    if (a->type() != GgufType::kUint32 || !v || *v < 8 || (*v & (*v - 1)) != 0) {
      throw GgufError("general.alignment must be a u32 power of two >= 8");
    }
    h.alignment = *v;
  }
  ByteSink sink;
  sink.put<uint32_t>(kGgufMagic);
  sink.put<uint32_t>(kGgufVersion);
  sink.put<uint64_t>(tensors.size());
  sink.put<uint64_t>(metadata.size());
  for (const auto& [key, value] : metadata.entries()) {
    sink.put_string(key);
    sink.put<uint32_t>(static_cast<uint32_t>(value.type()));
    sink.put_value(value);
  }
  std::unordered_set<std::string> names;
  uint64_t offset = 0;
  for (const TensorSpec& spec : tensors) {
    if (!names.insert(spec.name).second) throw GgufError("duplicate tensor name " + spec.name);
    if (spec.ne.empty() || spec.ne.size() > kMaxDims) {
      throw GgufError("tensor " + spec.name + ": needs 1.." + std::to_string(kMaxDims) + " dims");
    }
    if (!quant::row_fits(spec.type, spec.ne[0])) {
      throw GgufError("tensor " + spec.name + ": row of " + std::to_string(spec.ne[0]) +
                      " is not a whole number of " + std::string(quant::type_name(spec.type)) +
                      " blocks");
    }
    TensorInfo info;
    info.name = spec.name;
    info.type = spec.type;
    info.ne = spec.ne;
    info.record_pos = sink.out.size();
    info.offset = offset;
    info.size = static_cast<uint64_t>(quant::row_bytes(spec.type, spec.ne[0]) * info.n_rows());
    sink.put_string(spec.name);
    sink.put<uint32_t>(static_cast<uint32_t>(spec.ne.size()));
    for (int64_t d : spec.ne) sink.put<uint64_t>(static_cast<uint64_t>(d));
    sink.put<uint32_t>(static_cast<uint32_t>(spec.type));
    sink.put<uint64_t>(offset);
    offset = align_up(offset + info.size, h.alignment);
    h.tensors.push_back(std::move(info));
  }
  sink.out.resize(align_up(sink.out.size(), h.alignment), 0);
  h.bytes = std::move(sink.out);
  h.file_size = h.bytes.size() + offset;
  return h;
}

GgufWriter::GgufWriter(std::filesystem::path path, const GgufMetadata& metadata,
                       const std::vector<TensorSpec>& tensors)
    : path_(std::move(path)), header_(encode_header(metadata, tensors)) {
  partial_path_ = path_;
  partial_path_ += ".partial";
  std::filesystem::path dir = path_.parent_path().empty() ? "." : path_.parent_path();
  struct statvfs fs {};
  if (::statvfs(dir.c_str(), &fs) == 0) {
    uint64_t available = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
    if (available < header_.file_size) {
      throw GgufError(path_.string() + ": not enough free space: the file needs " +
                      std::to_string(header_.file_size) + " bytes, " + dir.string() + " has " +
                      std::to_string(available));
    }
  }
  fd_ = ::open(partial_path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw GgufError(partial_path_.string() + ": cannot create: " + errno_text());
  written_ = std::make_unique<std::atomic<uint64_t>[]>(header_.tensors.size());
  // Sizing the file first makes every padding byte a zero without writing it.
  if (::ftruncate(fd_, static_cast<off_t>(header_.file_size)) != 0) {
    fail_and_close("cannot size file: " + errno_text());
  }
  if (header_.file_size > 0 && ::fallocate(fd_, 0, 0, static_cast<off_t>(header_.file_size)) == 0) {
    void* p = ::mmap(nullptr, header_.file_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    if (p != MAP_FAILED) map_ = static_cast<uint8_t*>(p);
  } else if (errno == ENOSPC || errno == EFBIG) {
    fail_and_close("cannot reserve " + std::to_string(header_.file_size) +
                   " bytes: " + errno_text());
  }
  if (map_ != nullptr) {
    std::memcpy(map_, header_.bytes.data(), header_.bytes.size());
    return;
  }
  const uint8_t* p = header_.bytes.data();
  uint64_t n = header_.bytes.size(), done = 0;
  while (done < n) {
    ssize_t w = ::pwrite(fd_, p + done, n - done, static_cast<off_t>(done));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) fail_and_close("write failed: " + errno_text());
    done += static_cast<uint64_t>(w);
  }
}

// Maps the pages of [pos, pos + n) in one call rather than one page fault per 4 KiB, which
// dominates the cost of filling a fresh mapping (several times slower otherwise). Best effort:
// kernels before 5.14 lack MADV_POPULATE_WRITE and fault the pages in as usual.
void GgufWriter::populate(uint64_t pos, uint64_t n) {
#ifdef MADV_POPULATE_WRITE
  const uint64_t page = 4096;
  uint64_t begin = pos / page * page;
  ::madvise(map_ + begin, pos + n - begin, MADV_POPULATE_WRITE);
#else
  (void)pos;
  (void)n;
#endif
}

void GgufWriter::fail_and_close(const std::string& why) {
  if (map_ != nullptr) ::munmap(map_, header_.file_size);
  map_ = nullptr;
  ::close(fd_);
  fd_ = -1;
  std::error_code ignored;
  std::filesystem::remove(partial_path_, ignored);
  throw GgufError(partial_path_.string() + ": " + why);
}

GgufWriter::~GgufWriter() {
  if (map_ != nullptr) ::munmap(map_, header_.file_size);
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) {
    std::error_code ignored;
    std::filesystem::remove(partial_path_, ignored);
  }
}

void GgufWriter::write(size_t index, uint64_t offset, std::span<const uint8_t> data) {
  if (index >= header_.tensors.size()) throw GgufError("write: no tensor " + std::to_string(index));
  const TensorInfo& t = header_.tensors[index];
  if (offset > t.size || data.size() > t.size - offset) {
    throw GgufError("write: " + std::to_string(data.size()) + " bytes at " +
                    std::to_string(offset) + " overflow tensor " + t.name + " (" +
                    std::to_string(t.size) + " bytes)");
  }
  uint64_t pos = data_offset() + t.offset + offset;
  if (map_ != nullptr) {
    populate(pos, data.size());
    std::memcpy(map_ + pos, data.data(), data.size());
    written_[index] += data.size();
    return;
  }
  uint64_t done = 0;
  while (done < data.size()) {
    ssize_t w =
        ::pwrite(fd_, data.data() + done, data.size() - done, static_cast<off_t>(pos + done));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      throw GgufError(partial_path_.string() + ": writing tensor " + t.name +
                      " failed: " + errno_text());
    }
    done += static_cast<uint64_t>(w);
  }
  written_[index] += data.size();
}

void GgufWriter::commit() {
  for (size_t i = 0; i < header_.tensors.size(); ++i) {
    const TensorInfo& t = header_.tensors[i];
    if (written_[i].load() != t.size) {
      throw GgufError(path_.string() + ": tensor " + t.name + " got " +
                      std::to_string(written_[i].load()) + " of its " + std::to_string(t.size) +
                      " bytes; file not written");
    }
  }
  if (map_ != nullptr) {
    if (::msync(map_, header_.file_size, MS_SYNC) != 0) {
      throw GgufError(partial_path_.string() + ": flush failed: " + errno_text());
    }
    ::munmap(map_, header_.file_size);
    map_ = nullptr;
  }
  if (::fsync(fd_) != 0 && errno != EINVAL) {
    throw GgufError(partial_path_.string() + ": flush failed: " + errno_text());
  }
  ::close(fd_);
  fd_ = -1;
  std::error_code ec;
  std::filesystem::rename(partial_path_, path_, ec);
  if (ec) throw GgufError(path_.string() + ": cannot rename the finished file: " + ec.message());
  committed_ = true;
}

}  // namespace magnetar::gguf
