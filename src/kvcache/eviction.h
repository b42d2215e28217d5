// Which cache files to delete to bring the directory under its byte budget (kv-cache.md §9).
//
// A usable entry's worth is (h + 1) · tokens / bytes, where h is its hit count decayed with a
// six-hour half-life since its last use (below 0.01 it counts as 0): long, recently hit checkpoints
// are kept per byte of disk, and fresh ones compete on tokens per byte. The lowest worth goes
// first, ties to the least recently used. Files this process cannot use (another model's, another
// format version's) go before any usable entry, oldest first: they still count against the budget
// (ds4 leaves such files outside it forever), but never serve a request here. A protected file
// (the one just written) is never chosen.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace magnetar::kvcache {

struct EvictionCandidate {
  std::string name;
  uint64_t bytes = 0;
  uint64_t tokens = 0;
  uint64_t hits = 0;
  int64_t last_used = 0;  // Unix seconds
  bool usable = true;
  bool is_protected = false;
};

inline constexpr double kHitHalfLifeSeconds = 6 * 3600;

// (h + 1) · tokens / bytes with h = hits · 2^(−age / half-life).
double retention_score(const EvictionCandidate& c, int64_t now);

// The names to delete, in order, so that the remaining bytes are at most `budget` (or, when that
// is impossible without the protected files, every unprotected file).
std::vector<std::string> choose_evictions(std::vector<EvictionCandidate> candidates,
                                          uint64_t budget, int64_t now);

}  // namespace magnetar::kvcache
