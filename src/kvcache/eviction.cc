#include "kvcache/eviction.h"

#include <algorithm>
#include <cmath>

namespace magnetar::kvcache {

double retention_score(const EvictionCandidate& c, int64_t now) {
  double age = static_cast<double>(std::max<int64_t>(0, now - c.last_used));
  double hits = static_cast<double>(c.hits) * std::exp2(-age / kHitHalfLifeSeconds);
  if (hits < 0.01) hits = 0;
  return (hits + 1) * static_cast<double>(c.tokens) /
         static_cast<double>(std::max<uint64_t>(1, c.bytes));
}

std::vector<std::string> choose_evictions(std::vector<EvictionCandidate> candidates,
                                          uint64_t budget, int64_t now) {
  uint64_t total = 0;
  for (const EvictionCandidate& c : candidates) total += c.bytes;
  std::vector<std::pair<double, const EvictionCandidate*>> order;
  for (const EvictionCandidate& c : candidates)
    if (!c.is_protected) order.emplace_back(c.usable ? retention_score(c, now) : -1.0, &c);
  std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
    if (a.first != b.first) return a.first < b.first;
    if (a.second->last_used != b.second->last_used)
      return a.second->last_used < b.second->last_used;
    return a.second->name < b.second->name;  // a deterministic order for equal files
  });
  std::vector<std::string> victims;
  for (const auto& [score, c] : order) {
    if (total <= budget) break;
    victims.push_back(c->name);
    total -= c->bytes;
  }
  return victims;
}

}  // namespace magnetar::kvcache
