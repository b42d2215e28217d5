#include "gguf_corpus.h"

#include <cstring>

namespace magnetar::testing {
namespace {

constexpr uint32_t kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7,
                   kString = 8, kArray = 9, kU64 = 10, kI64 = 11, kF64 = 12;
constexpr uint32_t kTypeF32 = 0, kTypeQ8_0 = 8, kTypeI32 = 26;

template <typename T>
std::vector<uint8_t> le(T v) {
  std::vector<uint8_t> b(sizeof(T));
  std::memcpy(b.data(), &v, sizeof(T));  // the test hosts are little-endian, like the format
  return b;
}

void append(std::vector<uint8_t>& out, const std::vector<uint8_t>& part) {
  out.insert(out.end(), part.begin(), part.end());
}

RawImage with_kv(RawImage img, RawKv kv) {
  img.kvs.push_back(std::move(kv));
  return img;
}

}  // namespace

std::vector<uint8_t> le_u8(uint8_t v) { return le(v); }
std::vector<uint8_t> le_u32(uint32_t v) { return le(v); }
std::vector<uint8_t> le_u64(uint64_t v) { return le(v); }
std::vector<uint8_t> le_f32(float v) { return le(v); }
std::vector<uint8_t> le_string(const std::string& s) {
  std::vector<uint8_t> b(8 + s.size());
  uint64_t n = s.size();
  std::memcpy(b.data(), &n, 8);
  if (n != 0) std::memcpy(b.data() + 8, s.data(), n);
  return b;
}
std::vector<uint8_t> concat(std::initializer_list<std::vector<uint8_t>> parts) {
  std::vector<uint8_t> out;
  for (const auto& p : parts) append(out, p);
  return out;
}

std::vector<uint8_t> RawImage::encode() const {
  std::vector<uint8_t> out;
  append(out, le(magic));
  append(out, le(version));
  append(out, le<uint64_t>(tensor_count.value_or(tensors.size())));
  append(out, le<uint64_t>(kv_count.value_or(kvs.size())));
  for (const RawKv& kv : kvs) {
    append(out, le_string(kv.key));
    append(out, le(kv.type));
    append(out, kv.value);
  }
  for (const RawTensor& t : tensors) {
    append(out, le_string(t.name));
    append(out, le<uint32_t>(static_cast<uint32_t>(t.ne.size())));
    for (uint64_t d : t.ne) append(out, le(d));
    append(out, le(t.type));
    append(out, le(t.offset));
  }
  while (out.size() % alignment != 0) out.push_back(0);
  for (uint64_t i = 0; i < data_bytes; ++i) out.push_back(static_cast<uint8_t>(i * 7 + 1));
  return out;
}

RawImage small_valid_image() {
  RawImage img;
  img.kvs = {
      {"general.architecture", kString, le_string("test")},
      {"general.alignment", kU32, le<uint32_t>(32)},
      {"t.u8", kU8, le<uint8_t>(200)},
      {"t.i8", kI8, le<int8_t>(-100)},
      {"t.u16", kU16, le<uint16_t>(60000)},
      {"t.i16", kI16, le<int16_t>(-30000)},
      {"t.u32", kU32, le<uint32_t>(4000000000u)},
      {"t.i32", kI32, le<int32_t>(-2000000000)},
      {"t.f32", kF32, le<float>(1.5f)},
      {"t.bool", kBool, le<uint8_t>(1)},
      {"t.u64", kU64, le<uint64_t>(1ull << 60)},
      {"t.i64", kI64, le<int64_t>(-(1ll << 60))},
      {"t.f64", kF64, le<double>(-2.25)},
      {"t.strings", kArray,
       concat({le<uint32_t>(kString), le<uint64_t>(3), le_string("a"), le_string(""),
               le_string("\xC4\xA0t")})},
      {"t.nested", kArray,
       concat({le<uint32_t>(kArray), le<uint64_t>(2), le<uint32_t>(kU32), le<uint64_t>(2),
               le<uint32_t>(7), le<uint32_t>(8), le<uint32_t>(kI32), le<uint64_t>(1),
               le<int32_t>(-9)})},
  };
  // F32 [8, 2] = 64 bytes at 0; Q8_0 [64] = 2 blocks of 34 = 68 bytes at 64 (ends 132, padded to
  // 160); I32 [4] = 16 bytes at 160 (padded to 192).
  img.tensors = {{"a", {8, 2}, kTypeF32, 0}, {"b", {64}, kTypeQ8_0, 64}, {"c", {4}, kTypeI32, 160}};
  img.data_bytes = 192;
  return img;
}

std::vector<CorruptCase> corrupt_cases(bool all_truncations) {
  std::vector<CorruptCase> cases;
  const RawImage base = small_valid_image();
  auto add = [&](std::string name, const RawImage& img, std::string expect) {
    cases.push_back({std::move(name), img.encode(), std::move(expect)});
  };
  RawImage img;

  cases.push_back({"empty-file", {}, "truncated"});
  img = base, img.magic = 0x46554746;
  add("bad-magic", img, "bad magic");
  img = base, img.version = 2;
  add("version-2", img, "unsupported GGUF version 2");
  img = base, img.tensor_count = 1ull << 62;
  add("huge-tensor-count", img, "tensor count");
  img = base, img.kv_count = ~0ull;
  add("huge-metadata-count", img, "metadata count");
  img = with_kv(base, {"t.badlen", kString, le<uint64_t>(~0ull)});
  add("string-length-overflow", img, "exceeds");
  img = with_kv(base, {"t.badtype", 13, le<uint32_t>(0)});
  add("unknown-value-type", img, "unknown value type 13");
  img = with_kv(base,
                {"t.hugearray", kArray, concat({le<uint32_t>(kU64), le<uint64_t>(1ull << 61)})});
  add("huge-array", img, "array length");
  {
    std::vector<uint8_t> v;
    for (int i = 0; i < 10; ++i) append(v, concat({le<uint32_t>(kArray), le<uint64_t>(1)}));
    append(v, concat({le<uint32_t>(kU8), le<uint64_t>(0)}));
    img = with_kv(base, {"t.deep", kArray, v});
    add("nesting-too-deep", img, "nested deeper");
  }
  img = with_kv(base, {"t.bool2", kBool, le<uint8_t>(2)});
  add("bool-not-0-or-1", img, "is not 0 or 1");
  img = base, img.kvs.push_back(base.kvs[2]);
  add("duplicate-key", img, "duplicate metadata key");
  img = with_kv(base, {"", kU8, le<uint8_t>(0)});
  add("empty-key", img, "empty key");
  img = base, img.kvs[1] = {"general.alignment", kU64, le<uint64_t>(32)};
  add("alignment-wrong-type", img, "general.alignment must be u32");
  img = base, img.kvs[1] = {"general.alignment", kU32, le<uint32_t>(24)};
  add("alignment-not-power-of-two", img, "power of two");
  img = base, img.tensors[0].ne = {};
  add("zero-dims", img, "dimension count 0");
  img = base, img.tensors[0].ne = {1, 1, 1, 1, 1};
  add("five-dims", img, "dimension count 5");
  img = base, img.tensors[0].ne = {8, 0};
  add("zero-dimension", img, "is zero");
  img = base, img.tensors[0].ne = {1ull << 40, 1ull << 40};
  add("element-count-overflow", img, "overflows");
  img = base, img.tensors[1].type = 99;
  add("unknown-tensor-type", img, "unknown ggml type id 99");
  img = base, img.tensors[1].type = 4;  // removed Q4_2
  add("removed-tensor-type", img, "unknown ggml type id 4");
  img = base, img.tensors[1].ne = {33};
  add("partial-block-row", img, "not a multiple of the q8_0 block size");
  img = base, img.tensors[2].offset = 161;
  add("misaligned-offset", img, "not a multiple of the 32-byte alignment");
  img = base, img.tensors[2].offset = 1 << 20;
  add("offset-past-end", img, "extends past the end");
  img = base, img.tensors[2].ne = {64};  // 256 bytes from 160 > 192
  add("tensor-past-end", img, "extends past the end");
  img = base, img.tensors[0].ne = {8, 4};  // 128 bytes, overlaps b at 64
  add("overlap", img, "overlaps");
  img = base, img.tensors[2].name = "a";
  add("duplicate-tensor", img, "duplicate tensor name");
  img = base, img.tensors[2].name = "";
  add("empty-tensor-name", img, "empty name");
  img = base, img.tensors.push_back({"d", {1ull << 62}, kTypeF32, 192});
  add("byte-size-overflow", img, "byte size overflows");

  const std::vector<uint8_t> valid = base.encode();
  const size_t data_pos = valid.size() - base.data_bytes;
  // Any cut before the end of the last tensor's data (c: 16 bytes at 160) breaks the file; the
  // padding after it may go.
  const size_t last_end = data_pos + 176;
  std::vector<size_t> cuts;
  if (all_truncations) {
    for (size_t n = 0; n < last_end; ++n) cuts.push_back(n);
  } else {
    cuts = {3, 12, 23, 30, 100, data_pos / 2, data_pos - 5, data_pos + 10, last_end - 1};
  }
  for (size_t n : cuts) {
    cases.push_back({"truncated-at-" + std::to_string(n),
                     std::vector<uint8_t>(valid.begin(), valid.begin() + static_cast<long>(n)),
                     ""});
  }
  return cases;
}

}  // namespace magnetar::testing
