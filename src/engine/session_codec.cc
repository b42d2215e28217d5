#include "engine/session_codec.h"

#include <openssl/sha.h>

#include <cstring>
#include <string>

namespace magnetar::engine {
namespace {

constexpr char kMagic[8] = {'M', 'A', 'G', 'S', 'E', 'S', 'S', '1'};
constexpr uint32_t kVersion = 1;

class Writer {
 public:
  template <typename T>
  void put(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    out.insert(out.end(), p, p + sizeof(T));
  }
  template <typename T>
  void put_vector(const std::vector<T>& v) {
    put<uint64_t>(v.size());
    const auto* p = reinterpret_cast<const uint8_t*>(v.data());
    out.insert(out.end(), p, p + v.size() * sizeof(T));
  }
  void put_compressor(const std::optional<cpu::CompressorState>& c) {
    put<uint8_t>(c.has_value());
    if (!c) return;
    put(c->ratio);
    put(c->width);
    put(c->head_width);
    put_vector(c->kv);
    put_vector(c->score);
    put_vector(c->prev_kv);
    put_vector(c->prev_score);
    put_vector(c->rows);
  }
  void put_layer(const cpu::LayerState& l) {
    put_vector(l.window);
    put_compressor(l.compressor);
    put_compressor(l.indexer);
  }
  std::vector<uint8_t> out;
};

// Every read is bounds-checked; a payload is only trusted after its checksum matched, but a
// structure error still fails cleanly rather than reading out of bounds.
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> in) : in_(in) {}
  template <typename T>
  T get() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, in_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  template <typename T>
  std::vector<T> get_vector() {
    uint64_t n = get<uint64_t>();
    if (n > (in_.size() - pos_) / sizeof(T))
      throw SessionError("session payload: bad array length");
    std::vector<T> v(n);
    std::memcpy(v.data(), in_.data() + pos_, n * sizeof(T));
    pos_ += n * sizeof(T);
    return v;
  }
  std::optional<cpu::CompressorState> get_compressor() {
    if (!get<uint8_t>()) return std::nullopt;
    cpu::CompressorState c;
    c.ratio = get<uint32_t>();
    c.width = get<uint32_t>();
    c.head_width = get<uint32_t>();
    c.kv = get_vector<float>();
    c.score = get_vector<float>();
    c.prev_kv = get_vector<float>();
    c.prev_score = get_vector<float>();
    c.rows = get_vector<float>();
    return c;
  }
  cpu::LayerState get_layer() {
    cpu::LayerState l;
    l.window = get_vector<float>();
    l.compressor = get_compressor();
    l.indexer = get_compressor();
    return l;
  }
  bool done() const { return pos_ == in_.size(); }

 private:
  void need(size_t n) const {
    if (n > in_.size() - pos_) throw SessionError("session payload is truncated");
  }
  std::span<const uint8_t> in_;
  size_t pos_ = 0;
};

}  // namespace

std::array<uint8_t, 32> sha256(std::span<const uint8_t> bytes) {
  std::array<uint8_t, 32> digest;
  SHA256(bytes.data(), bytes.size(), digest.data());
  return digest;
}

std::vector<uint8_t> encode_session(const ModelIdentity& model, const SessionData& s) {
  Writer payload;
  payload.put_vector(s.tokens);
  payload.put_vector(s.logits);
  payload.put<int64_t>(s.state.position);
  payload.put<uint64_t>(s.state.layers.size());
  for (const cpu::LayerState& l : s.state.layers) payload.put_layer(l);
  payload.put<uint8_t>(s.state.mtp.has_value());
  if (s.state.mtp) payload.put_layer(*s.state.mtp);
  payload.put_vector(s.state.mtp_pending_hidden);
  payload.put<int64_t>(s.state.counters.window_wraps);
  payload.put_vector(s.state.counters.rows_emitted);
  payload.put<int64_t>(s.state.counters.indexer_partial_selections);

  Writer file;
  file.out.insert(file.out.end(), kMagic, kMagic + sizeof kMagic);
  file.put(kVersion);
  file.out.insert(file.out.end(), model.begin(), model.end());
  file.put<uint64_t>(payload.out.size());
  file.out.insert(file.out.end(), payload.out.begin(), payload.out.end());
  std::array<uint8_t, 32> digest = sha256(file.out);
  file.out.insert(file.out.end(), digest.begin(), digest.end());
  return file.out;
}

SessionData decode_session(const ModelIdentity& model, std::span<const uint8_t> bytes) {
  constexpr size_t kHeader = sizeof kMagic + 4 + 32 + 8;
  if (bytes.size() < kHeader + 32) throw SessionError("session payload is truncated");
  if (std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0) {
    throw SessionError("not a Magnetar session (bad magic)");
  }
  Reader header(bytes.subspan(sizeof kMagic, 4 + 32 + 8));
  uint32_t version = header.get<uint32_t>();
  if (version != kVersion) {
    throw SessionError("session format version " + std::to_string(version) + " is not supported");
  }
  if (std::memcmp(bytes.data() + sizeof kMagic + 4, model.data(), model.size()) != 0) {
    throw SessionError("the session was saved with another model");
  }
  uint64_t length;
  std::memcpy(&length, bytes.data() + sizeof kMagic + 4 + 32, 8);
  if (length != bytes.size() - kHeader - 32) throw SessionError("session payload is truncated");
  std::array<uint8_t, 32> digest = sha256(bytes.first(bytes.size() - 32));
  if (std::memcmp(digest.data(), bytes.data() + bytes.size() - 32, 32) != 0) {
    throw SessionError("session payload is damaged (checksum mismatch)");
  }
  Reader r(bytes.subspan(kHeader, length));
  SessionData s;
  s.tokens = r.get_vector<int32_t>();
  s.logits = r.get_vector<float>();
  s.state.position = r.get<int64_t>();
  uint64_t layers = r.get<uint64_t>();
  if (layers > length) throw SessionError("session payload: bad layer count");
  for (uint64_t i = 0; i < layers; ++i) s.state.layers.push_back(r.get_layer());
  if (r.get<uint8_t>()) s.state.mtp = r.get_layer();
  s.state.mtp_pending_hidden = r.get_vector<float>();
  s.state.counters.window_wraps = r.get<int64_t>();
  s.state.counters.rows_emitted = r.get_vector<int64_t>();
  s.state.counters.indexer_partial_selections = r.get<int64_t>();
  if (!r.done()) throw SessionError("session payload has trailing bytes");
  if (s.state.position != static_cast<int64_t>(s.tokens.size())) {
    throw SessionError("session payload is inconsistent (position and tokens differ)");
  }
  return s;
}

}  // namespace magnetar::engine
