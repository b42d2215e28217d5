// The two labels every checkpoint carries: why it was written (the save points of kv-cache.md §8)
// and what its key text is (§5). They are stored in entry files (entry_format.h) and are the
// vocabulary the server's state-store hooks speak (server/state_store.h).
#pragma once

#include <cstdint>
#include <string_view>

namespace magnetar::kvcache {

// Why the server wrote a checkpoint (kv-cache.md §8).
enum class SaveReason : uint32_t {
  kUnknown = 0,
  kCold = 1,
  kContinued = 2,
  kEvict = 3,
  kShutdown = 4
};
// What the key text is (kv-cache.md §5): the rendered text of the tokens, or a client-visible
// transcript that omits hidden reasoning the tokens contain.
enum class KeyKind : uint32_t { kTokenText = 0, kResponsesVisible = 1, kThinkingVisible = 2 };

// "cold", "continued", "evict", "shutdown", "unknown".
std::string_view reason_name(SaveReason reason);
// "token-text", "responses-visible", "thinking-visible".
std::string_view key_kind_name(KeyKind kind);

}  // namespace magnetar::kvcache
