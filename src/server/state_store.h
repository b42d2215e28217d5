// Where model states go beyond the live sessions: the hook points of a persistent KV cache
// (kv-cache.md §8 save points, §10 lookup), called by the scheduler.
//
// The scheduler owns the policy-free part: it calls restore() when no live session serves a
// prompt, pauses a cold prefill where cold_save_point() says and saves there, stops prefill
// chunks at each continued_save_point() and saves there (and before decode steps that land on
// one), saves a live session before its slot is taken by another conversation (evict) and every
// live session at shutdown. Everything else — whether a save is worth it (minimum length, budget),
// file format, checksums, eviction of files — is the store's. The server runs with NullStateStore
// (live reuse only) unless `--kv-disk-dir` plugs in the disk store (disk_state_store.h).
//
// All calls come from the scheduler thread, except recall_tool_ids(), which handler threads call
// before rendering a request.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/engine.h"
#include "kvcache/save_reason.h"

namespace magnetar::server {

class StateStore {
 public:
  virtual ~StateStore() = default;

  // §10: loads into `session` the longest stored state whose key text is a byte prefix of
  // `prompt_text` and returns the number of bytes it covers (the session's tokens are then the
  // stored ones); nullopt, with the session unchanged, when there is none.
  virtual std::optional<size_t> restore(std::string_view prompt_text, engine::Session& session) = 0;

  // §8 cold: for a prompt served from nothing, the token count at which to pause the prefill and
  // save (at most prompt.size()); nullopt for none.
  virtual std::optional<int64_t> cold_save_point(std::span<const int32_t> prompt) = 0;

  // §8 continued: the smallest token count greater than `processed` at which a save is due;
  // nullopt for none.
  virtual std::optional<int64_t> continued_save_point(int64_t processed) = 0;

  // Saves the session's processed state under `key_text` (all of it is the session's; the store
  // may decline, e.g. a state shorter than its minimum).
  virtual void save(kvcache::SaveReason reason, const engine::Session& session,
                    std::string_view key_text, kvcache::KeyKind kind) = 0;

  // §14: the request mentions these tool-call ids that the in-memory map lacks; a store that keeps
  // tool maps adds what it knows to the server's kvcache::ToolIdMap it was built with.
  virtual void recall_tool_ids(const std::vector<std::string>& ids) = 0;
};

// No persistence: live sessions only.
class NullStateStore final : public StateStore {
 public:
  std::optional<size_t> restore(std::string_view, engine::Session&) override {
    return std::nullopt;
  }
  std::optional<int64_t> cold_save_point(std::span<const int32_t>) override { return std::nullopt; }
  std::optional<int64_t> continued_save_point(int64_t) override { return std::nullopt; }
  void save(kvcache::SaveReason, const engine::Session&, std::string_view,
            kvcache::KeyKind) override {}
  void recall_tool_ids(const std::vector<std::string>&) override {}
};

}  // namespace magnetar::server
