#include "kvcache/tool_id_map.h"

#include <openssl/rand.h>

#include <algorithm>
#include <bitset>
#include <set>
#include <stdexcept>
#include <unordered_set>

namespace magnetar::kvcache {

ToolIdMap::ToolIdMap(ToolIdMapLimits limits) : limits_(limits) {}

std::string ToolIdMap::new_id(std::string_view prefix, std::span<const std::string> taken) const {
  static constexpr char kHex[] = "0123456789abcdef";
  // A collision of 128 random bits is practically impossible; the loop only guards the contract.
  for (;;) {
    unsigned char random[16];
    if (RAND_bytes(random, sizeof random) != 1)
      throw std::runtime_error("tool call id: the OpenSSL random generator failed");
    std::string id(prefix);
    for (unsigned char b : random) {
      id += kHex[b >> 4];
      id += kHex[b & 15];
    }
    if (std::find(taken.begin(), taken.end(), id) != taken.end()) continue;
    std::lock_guard lock(mu_);
    if (!ids_.contains(id)) return id;
  }
}

const std::string* ToolIdMap::acquire_block(std::string_view dsml) {
  auto [it, inserted] = blocks_.try_emplace(std::string(dsml), 0);
  if (inserted) bytes_ += dsml.size() + kOverheadBytes;
  ++it->second;
  return &it->first;  // node-based map: the key's address is stable until the node is erased
}

void ToolIdMap::release_block(const std::string* block) {
  auto it = blocks_.find(*block);
  if (--it->second == 0) {
    bytes_ -= it->first.size() + kOverheadBytes;
    blocks_.erase(it);
  }
}

void ToolIdMap::erase_id(std::unordered_map<std::string, IdEntry>::iterator it) {
  bytes_ -= it->first.size() + kOverheadBytes;
  release_block(it->second.block);
  recency_.erase(it->second.recency);
  ids_.erase(it);
}

void ToolIdMap::put(const std::string& id, std::string_view dsml) {
  // Acquire before releasing, so a block the id already maps to is not dropped and re-added.
  const std::string* block = acquire_block(dsml);
  if (auto it = ids_.find(id); it != ids_.end()) erase_id(it);
  recency_.push_front(id);
  ids_.emplace(id, IdEntry{recency_.begin(), block});
  bytes_ += id.size() + kOverheadBytes;
}

void ToolIdMap::enforce_limits() {
  while (!recency_.empty() && (ids_.size() > limits_.max_ids || bytes_ > limits_.max_bytes))
    erase_id(ids_.find(recency_.back()));
}

bool ToolIdMap::remember(std::span<const std::string> ids, std::string_view dsml) {
  if (dsml.empty() || ids.empty()) return false;
  if (std::any_of(ids.begin(), ids.end(), [](const std::string& id) { return id.empty(); }))
    return false;
  if (dsml.size() + 2 * kOverheadBytes + ids.front().size() > limits_.max_bytes) return false;
  std::lock_guard lock(mu_);
  for (const std::string& id : ids) put(id, dsml);
  enforce_limits();
  return true;
}

void ToolIdMap::remember(std::span<const ToolCallRecord> records) {
  std::lock_guard lock(mu_);
  for (const ToolCallRecord& r : records) {
    if (r.id.empty() || r.dsml.empty()) continue;
    if (r.dsml.size() + 2 * kOverheadBytes + r.id.size() > limits_.max_bytes) continue;
    put(r.id, r.dsml);
  }
  enforce_limits();
}

std::optional<std::string> ToolIdMap::find(std::string_view id) {
  std::lock_guard lock(mu_);
  auto it = ids_.find(std::string(id));
  if (it == ids_.end()) return std::nullopt;
  recency_.splice(recency_.begin(), recency_, it->second.recency);
  return *it->second.block;
}

bool ToolIdMap::contains(std::string_view id) const {
  std::lock_guard lock(mu_);
  return ids_.contains(std::string(id));
}

std::optional<std::string> ToolIdMap::replay_block(std::span<const std::string> ids) {
  if (ids.empty()) return std::nullopt;
  std::lock_guard lock(mu_);
  const std::string* block = nullptr;
  for (const std::string& id : ids) {
    auto it = ids_.find(id);
    if (it == ids_.end()) return std::nullopt;
    if (block != nullptr && block != it->second.block) return std::nullopt;
    block = it->second.block;
  }
  for (const std::string& id : ids) {
    auto it = ids_.find(id);
    recency_.splice(recency_.begin(), recency_, it->second.recency);
  }
  return *block;
}

std::vector<ToolCallRecord> ToolIdMap::records_within(std::string_view text) const {
  std::lock_guard lock(mu_);
  // One pass over the text finds every block: blocks are indexed by their first few bytes (the
  // anchor), so each text position costs a hash lookup per anchor length only where a block could
  // start, and a full comparison only where an anchor matched.
  constexpr size_t kAnchorBytes = 16;
  std::unordered_map<std::string_view, std::vector<const std::string*>> by_anchor;
  std::bitset<256> first_bytes;
  std::set<size_t> anchor_lengths;
  for (const auto& [block, refs] : blocks_) {
    std::string_view anchor = std::string_view(block).substr(0, kAnchorBytes);
    by_anchor[anchor].push_back(&block);
    first_bytes.set(static_cast<unsigned char>(block.front()));
    anchor_lengths.insert(anchor.size());
  }
  std::unordered_set<const std::string*> present;
  for (size_t i = 0; i < text.size(); ++i) {
    if (!first_bytes.test(static_cast<unsigned char>(text[i]))) continue;
    for (size_t length : anchor_lengths) {
      if (length > text.size() - i) break;
      auto it = by_anchor.find(text.substr(i, length));
      if (it == by_anchor.end()) continue;
      for (const std::string* block : it->second)
        if (text.substr(i).starts_with(*block)) present.insert(block);
    }
  }
  std::vector<ToolCallRecord> records;
  for (const std::string& id : recency_) {
    const std::string* block = ids_.at(id).block;
    if (present.contains(block)) records.push_back({id, *block});
  }
  return records;
}

size_t ToolIdMap::size() const {
  std::lock_guard lock(mu_);
  return ids_.size();
}

size_t ToolIdMap::bytes() const {
  std::lock_guard lock(mu_);
  return bytes_;
}

}  // namespace magnetar::kvcache
