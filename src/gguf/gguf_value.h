// Metadata values of a GGUF file.
//
// A GGUF header is a list of (key, typed value) records. Values are scalars (integers of 8..64
// bits, floats, bool), strings, or arrays of one element type (arrays may nest). GgufValue keeps
// the exact wire type so that a file can be re-written byte for byte and so that readers can apply
// ds4's type rules (e.g. "integer keys must be UINT32"). Arrays of numbers and strings are stored
// flat, because the tokenizer arrays hold 129,280 entries and are read in bulk.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace magnetar::gguf {

// Value type ids as stored in the file (gguf.md §1.4).
enum class GgufType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

inline constexpr uint32_t kMaxGgufType = 12;

std::string_view gguf_type_name(GgufType type);

// Encoded size of one scalar of `type`; 0 for strings and arrays (variable length).
size_t gguf_scalar_size(GgufType type);

class GgufValue {
 public:
  // Arrays: numbers and bools are kept as their little-endian bytes; strings as a vector; nested
  // arrays as a vector of values.
  struct Array {
    GgufType element_type = GgufType::kUint8;
    std::vector<uint8_t> packed;       // numeric and bool elements
    std::vector<std::string> strings;  // string elements
    std::vector<GgufValue> nested;     // array elements
  };

  GgufValue() : GgufValue(GgufType::kUint8, uint64_t{0}) {}

  static GgufValue u8(uint8_t v) { return {GgufType::kUint8, uint64_t{v}}; }
  static GgufValue i8(int8_t v) { return {GgufType::kInt8, int64_t{v}}; }
  static GgufValue u16(uint16_t v) { return {GgufType::kUint16, uint64_t{v}}; }
  static GgufValue i16(int16_t v) { return {GgufType::kInt16, int64_t{v}}; }
  static GgufValue u32(uint32_t v) { return {GgufType::kUint32, uint64_t{v}}; }
  static GgufValue i32(int32_t v) { return {GgufType::kInt32, int64_t{v}}; }
  static GgufValue u64(uint64_t v) { return {GgufType::kUint64, v}; }
  static GgufValue i64(int64_t v) { return {GgufType::kInt64, v}; }
  static GgufValue f32(float v) { return {GgufType::kFloat32, double{v}}; }
  static GgufValue f64(double v) { return {GgufType::kFloat64, v}; }
  static GgufValue boolean(bool v) { return {GgufType::kBool, v}; }
  static GgufValue string(std::string v) { return {GgufType::kString, std::move(v)}; }
  static GgufValue string_array(std::vector<std::string> v);
  static GgufValue i32_array(const std::vector<int32_t>& v);
  static GgufValue u32_array(const std::vector<uint32_t>& v);
  static GgufValue f32_array(const std::vector<float>& v);
  // An array whose raw element bytes are already encoded (used by the reader).
  static GgufValue packed_array(GgufType element_type, std::vector<uint8_t> bytes);
  static GgufValue nested_array(GgufType element_type, std::vector<GgufValue> items);

  GgufType type() const { return type_; }
  bool is_array() const { return type_ == GgufType::kArray; }
  bool is_integer() const;
  bool is_float() const { return type_ == GgufType::kFloat32 || type_ == GgufType::kFloat64; }

  // Scalar access. Integers convert only when the value is representable; these return nullopt
  // for strings, arrays and out-of-range values rather than guessing.
  std::optional<uint64_t> as_u64() const;
  std::optional<int64_t> as_i64() const;
  std::optional<double> as_f64() const;  // any numeric scalar
  std::optional<bool> as_bool() const;
  const std::string* as_string() const;  // nullptr unless a string

  // Array access (nullptr / empty unless an array).
  const Array* array() const { return std::get_if<Array>(&data_); }
  GgufType element_type() const;
  uint64_t array_size() const;
  // Element i of a numeric array as a scalar value.
  GgufValue element(uint64_t i) const;

  // Short human-readable rendering; arrays show at most `max_items` elements.
  std::string to_display(size_t max_items = 8) const;

  bool operator==(const GgufValue& other) const;

 private:
  using Data = std::variant<uint64_t, int64_t, double, bool, std::string, Array>;
  GgufValue(GgufType type, Data data) : type_(type), data_(std::move(data)) {}

  GgufType type_;
  Data data_;
};

// The ordered list of metadata records. Order is kept because writers copy it and `inspect`
// prints it; lookups return the first match.
class GgufMetadata {
 public:
  using Entry = std::pair<std::string, GgufValue>;

  // Replaces the value of an existing key in place, or appends a new record.
  void set(std::string_view key, GgufValue value);
  bool erase(std::string_view key);
  const GgufValue* find(std::string_view key) const;
  bool contains(std::string_view key) const { return find(key) != nullptr; }
  const std::vector<Entry>& entries() const { return entries_; }
  size_t size() const { return entries_.size(); }

  // A string value, or nullopt when absent or of another type.
  std::optional<std::string> get_string(std::string_view key) const;

 private:
  std::vector<Entry> entries_;
};

}  // namespace magnetar::gguf
