// Sessions as bytes: a sequence's whole state (tokens, window rings, compressor states, compressed
// rows, MTP state) in a self-checking payload, so a chat can be saved and resumed without any
// prefill (kv-cache.md §6 describes ds4's payload; this keeps the same information).
//
// Layout, all little-endian: "MAGSESS1", u32 format version, the 32-byte identity of the model the
// state belongs to, u64 payload length, the payload, then the SHA-256 of everything before it. A
// payload from another model (a different identity), a damaged one (checksum) or a truncated one is
// refused with a SessionError before anything is restored.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <vector>

#include "backend/cpu/sequence_state.h"

namespace magnetar::engine {

class SessionError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

using ModelIdentity = std::array<uint8_t, 32>;

struct SessionData {
  std::vector<int32_t> tokens;  // the tokens the state has processed
  std::vector<float> logits;    // the last token's logits
  cpu::SequenceState state;
};

std::vector<uint8_t> encode_session(const ModelIdentity& model, const SessionData& session);

// Throws SessionError naming what is wrong.
SessionData decode_session(const ModelIdentity& model, std::span<const uint8_t> bytes);

// SHA-256 of the bytes (OpenSSL).
std::array<uint8_t, 32> sha256(std::span<const uint8_t> bytes);

}  // namespace magnetar::engine
