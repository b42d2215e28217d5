#include "server/tool_memory.h"

#include <openssl/rand.h>

#include <stdexcept>

namespace magnetar::server {

ToolMemory::ToolMemory(size_t max_ids, size_t max_bytes)
    : max_ids_(max_ids), max_bytes_(max_bytes) {}

std::string ToolMemory::new_id(std::string_view prefix) const {
  static constexpr char kHex[] = "0123456789abcdef";
  for (;;) {
    unsigned char random[16];
    if (RAND_bytes(random, sizeof random) != 1) {
      throw std::runtime_error("the random generator failed; no tool-call id can be made");
    }
    std::string id(prefix);
    for (unsigned char b : random) {
      id += kHex[b >> 4];
      id += kHex[b & 15];
    }
    if (!contains(id)) return id;
  }
}

void ToolMemory::remember(const std::vector<std::string>& ids, const std::string& dsml) {
  if (ids.empty() || max_ids_ == 0) return;
  auto block = std::make_shared<const std::string>(dsml);
  std::lock_guard lock(mutex_);
  bytes_ += block->size();
  for (const std::string& id : ids) {
    auto it = entries_.find(id);
    if (it != entries_.end()) erase(it);
    recency_.push_front(id);
    entries_[id] = Entry{block, recency_.begin()};
    bytes_ += id.size();
  }
  block.reset();  // so that use_count() counts only the map's references while evicting
  evict_to_limits();
}

std::optional<std::string> ToolMemory::block_for(const std::vector<std::string>& ids) {
  if (ids.empty()) return std::nullopt;
  std::lock_guard lock(mutex_);
  std::shared_ptr<const std::string> block;
  for (const std::string& id : ids) {
    auto it = entries_.find(id);
    if (it == entries_.end()) return std::nullopt;
    if (block && *block != *it->second.block) return std::nullopt;
    block = it->second.block;
  }
  for (const std::string& id : ids) {
    Entry& e = entries_[id];
    recency_.splice(recency_.begin(), recency_, e.recency);
  }
  return *block;
}

bool ToolMemory::contains(const std::string& id) const {
  std::lock_guard lock(mutex_);
  return entries_.count(id) != 0;
}

std::vector<std::pair<std::string, std::string>> ToolMemory::entries_in(
    std::string_view text) const {
  std::lock_guard lock(mutex_);
  std::vector<std::pair<std::string, std::string>> out;
  std::unordered_map<const std::string*, bool> occurs;  // each distinct block searched once
  for (const std::string& id : recency_) {
    const Entry& e = entries_.at(id);
    auto [it, fresh] = occurs.emplace(e.block.get(), false);
    if (fresh) it->second = text.find(*e.block) != std::string_view::npos;
    if (it->second) out.emplace_back(id, *e.block);
  }
  return out;
}

size_t ToolMemory::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

size_t ToolMemory::bytes() const {
  std::lock_guard lock(mutex_);
  return bytes_;
}

void ToolMemory::erase(std::unordered_map<std::string, Entry>::iterator it) {
  bytes_ -= it->first.size();
  // The block's bytes leave with its last id (the map holds the only other references).
  if (it->second.block.use_count() == 1) bytes_ -= it->second.block->size();
  recency_.erase(it->second.recency);
  entries_.erase(it);
}

void ToolMemory::evict_to_limits() {
  while (!recency_.empty() && (entries_.size() > max_ids_ || bytes_ > max_bytes_)) {
    erase(entries_.find(recency_.back()));
  }
}

}  // namespace magnetar::server
