#include "gguf/gguf_value.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>

namespace magnetar::gguf {

std::string_view gguf_type_name(GgufType type) {
  switch (type) {
    case GgufType::kUint8:
      return "u8";
    case GgufType::kInt8:
      return "i8";
    case GgufType::kUint16:
      return "u16";
    case GgufType::kInt16:
      return "i16";
    case GgufType::kUint32:
      return "u32";
    case GgufType::kInt32:
      return "i32";
    case GgufType::kFloat32:
      return "f32";
    case GgufType::kBool:
      return "bool";
    case GgufType::kString:
      return "string";
    case GgufType::kArray:
      return "array";
    case GgufType::kUint64:
      return "u64";
    case GgufType::kInt64:
      return "i64";
    case GgufType::kFloat64:
      return "f64";
  }
  return "?";
}

size_t gguf_scalar_size(GgufType type) {
  switch (type) {
    case GgufType::kUint8:
    case GgufType::kInt8:
    case GgufType::kBool:
      return 1;
    case GgufType::kUint16:
    case GgufType::kInt16:
      return 2;
    case GgufType::kUint32:
    case GgufType::kInt32:
    case GgufType::kFloat32:
      return 4;
    case GgufType::kUint64:
    case GgufType::kInt64:
    case GgufType::kFloat64:
      return 8;
    case GgufType::kString:
    case GgufType::kArray:
      return 0;
  }
  return 0;
}

namespace {

template <typename T>
std::vector<uint8_t> pack(const std::vector<T>& values) {
  std::vector<uint8_t> bytes(values.size() * sizeof(T));
  if (!values.empty()) std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

template <typename T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

}  // namespace

GgufValue GgufValue::string_array(std::vector<std::string> v) {
  Array a;
  a.element_type = GgufType::kString;
  a.strings = std::move(v);
  return {GgufType::kArray, std::move(a)};
}

GgufValue GgufValue::i32_array(const std::vector<int32_t>& v) {
  return packed_array(GgufType::kInt32, pack(v));
}

GgufValue GgufValue::u32_array(const std::vector<uint32_t>& v) {
  return packed_array(GgufType::kUint32, pack(v));
}

GgufValue GgufValue::f32_array(const std::vector<float>& v) {
  return packed_array(GgufType::kFloat32, pack(v));
}

GgufValue GgufValue::packed_array(GgufType element_type, std::vector<uint8_t> bytes) {
  Array a;
  a.element_type = element_type;
  a.packed = std::move(bytes);
  return {GgufType::kArray, std::move(a)};
}

GgufValue GgufValue::nested_array(GgufType element_type, std::vector<GgufValue> items) {
  Array a;
  a.element_type = element_type;
  a.nested = std::move(items);
  return {GgufType::kArray, std::move(a)};
}

bool GgufValue::is_integer() const {
  switch (type_) {
    case GgufType::kUint8:
    case GgufType::kInt8:
    case GgufType::kUint16:
    case GgufType::kInt16:
    case GgufType::kUint32:
    case GgufType::kInt32:
    case GgufType::kUint64:
    case GgufType::kInt64:
      return true;
    default:
      return false;
  }
}

std::optional<uint64_t> GgufValue::as_u64() const {
  if (const auto* u = std::get_if<uint64_t>(&data_)) return *u;
  if (const auto* i = std::get_if<int64_t>(&data_)) {
    if (*i >= 0) return static_cast<uint64_t>(*i);
  }
  return std::nullopt;
}

std::optional<int64_t> GgufValue::as_i64() const {
  if (const auto* i = std::get_if<int64_t>(&data_)) return *i;
  if (const auto* u = std::get_if<uint64_t>(&data_)) {
    if (*u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return static_cast<int64_t>(*u);
    }
  }
  return std::nullopt;
}

std::optional<double> GgufValue::as_f64() const {
  if (const auto* d = std::get_if<double>(&data_)) return *d;
  if (const auto* u = std::get_if<uint64_t>(&data_)) return static_cast<double>(*u);
  if (const auto* i = std::get_if<int64_t>(&data_)) return static_cast<double>(*i);
  return std::nullopt;
}

std::optional<bool> GgufValue::as_bool() const {
  if (const auto* b = std::get_if<bool>(&data_)) return *b;
  return std::nullopt;
}

const std::string* GgufValue::as_string() const { return std::get_if<std::string>(&data_); }

GgufType GgufValue::element_type() const {
  const Array* a = array();
  return a ? a->element_type : GgufType::kUint8;
}

uint64_t GgufValue::array_size() const {
  const Array* a = array();
  if (a == nullptr) return 0;
  if (a->element_type == GgufType::kString) return a->strings.size();
  if (a->element_type == GgufType::kArray) return a->nested.size();
  return a->packed.size() / gguf_scalar_size(a->element_type);
}

GgufValue GgufValue::element(uint64_t i) const {
  const Array* a = array();
  if (a == nullptr || i >= array_size()) return {};
  if (a->element_type == GgufType::kString) return string(a->strings[i]);
  if (a->element_type == GgufType::kArray) return a->nested[i];
  const uint8_t* p = a->packed.data() + i * gguf_scalar_size(a->element_type);
  switch (a->element_type) {
    case GgufType::kUint8:
      return u8(load<uint8_t>(p));
    case GgufType::kInt8:
      return i8(load<int8_t>(p));
    case GgufType::kUint16:
      return u16(load<uint16_t>(p));
    case GgufType::kInt16:
      return i16(load<int16_t>(p));
    case GgufType::kUint32:
      return u32(load<uint32_t>(p));
    case GgufType::kInt32:
      return i32(load<int32_t>(p));
    case GgufType::kFloat32:
      return f32(load<float>(p));
    case GgufType::kBool:
      return boolean(load<uint8_t>(p) != 0);
    case GgufType::kUint64:
      return u64(load<uint64_t>(p));
    case GgufType::kInt64:
      return i64(load<int64_t>(p));
    case GgufType::kFloat64:
      return f64(load<double>(p));
    default:
      return {};
  }
}

std::string GgufValue::to_display(size_t max_items) const {
  std::ostringstream out;
  if (const std::string* s = as_string()) {
    constexpr size_t kMaxChars = 80;
    out << '"' << (s->size() > kMaxChars ? s->substr(0, kMaxChars) + "..." : *s) << '"';
  } else if (is_array()) {
    uint64_t n = array_size();
    out << gguf_type_name(element_type()) << "[" << n << "] [";
    for (uint64_t i = 0; i < n && i < max_items; ++i) {
      out << (i ? ", " : "") << element(i).to_display(max_items);
    }
    out << (n > max_items ? ", ...]" : "]");
  } else if (auto b = as_bool()) {
    out << (*b ? "true" : "false");
  } else if (is_float()) {
    out << *as_f64();
  } else if (auto i = as_i64()) {
    out << *i;
  } else {
    out << *as_u64();
  }
  return out.str();
}

bool GgufValue::operator==(const GgufValue& other) const {
  if (type_ != other.type_) return false;
  if (const Array* a = array()) {
    const Array* b = other.array();
    return a->element_type == b->element_type && a->packed == b->packed &&
           a->strings == b->strings && a->nested == b->nested;
  }
  if (is_float()) {
    // Bitwise equality so that NaN == NaN for round-trip checks.
    double x = *as_f64(), y = *other.as_f64();
    return std::memcmp(&x, &y, sizeof x) == 0;
  }
  if (const std::string* str = as_string()) return *str == *other.as_string();
  if (std::optional<bool> b = as_bool()) return b == other.as_bool();
  return as_u64() == other.as_u64() && as_i64() == other.as_i64();
}

void GgufMetadata::set(std::string_view key, GgufValue value) {
  for (Entry& e : entries_) {
    if (e.first == key) {
      e.second = std::move(value);
      return;
    }
  }
  entries_.emplace_back(std::string(key), std::move(value));
}

bool GgufMetadata::erase(std::string_view key) {
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    if (it->first == key) {
      entries_.erase(it);
      return true;
    }
  }
  return false;
}

const GgufValue* GgufMetadata::find(std::string_view key) const {
  for (const Entry& e : entries_) {
    if (e.first == key) return &e.second;
  }
  return nullptr;
}

std::optional<std::string> GgufMetadata::get_string(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr || v->as_string() == nullptr) return std::nullopt;
  return *v->as_string();
}

}  // namespace magnetar::gguf
