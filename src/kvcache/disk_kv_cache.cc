#include "kvcache/disk_kv_cache.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <set>
#include <utility>

#include "kvcache/eviction.h"

namespace magnetar::kvcache {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kTempMarker = ".tmp.";

// "<entry name>.tmp.<pid>.<n>": a write in progress, or one a crash interrupted.
bool is_temp_name(std::string_view name) {
  size_t marker = name.find(kTempMarker);
  return marker != std::string_view::npos && is_entry_name(name.substr(0, marker));
}

CacheOptions prepared(CacheOptions options) {
  if (options.budget_bytes == 0) throw KvCacheError("kv cache: the disk budget must be positive");
  if (options.dir.empty()) throw KvCacheError("kv cache: no directory given");
  create_private_directory(options.dir);
  // Refused now rather than at the first save, so that a server can say so at startup.
  if (::access(options.dir.c_str(), W_OK | X_OK) != 0)
    throw KvCacheError("the KV cache directory " + options.dir.string() +
                           " is not writable: " + describe_errno(errno),
                       errno);
  return options;
}

std::string describe(const EntryInfo& e) {
  return std::to_string(e.token_count) + " tokens, " + std::to_string(e.file_bytes) + " bytes, " +
         std::string(reason_name(e.reason));
}

}  // namespace

// Reports gathered while the lock is held, delivered when this object goes out of scope: declared
// before the lock_guard, it outlives it, so the callback never runs under the cache's lock (it may
// call stats() or log at leisure).
class DiskKvCache::PendingReports {
 public:
  explicit PendingReports(const ReportFn& sink) : sink_(sink) {}
  PendingReports(const PendingReports&) = delete;
  PendingReports& operator=(const PendingReports&) = delete;
  ~PendingReports() {
    if (!sink_) return;
    for (const CacheReport& r : reports_) {
      try {
        sink_(r);
      } catch (...) {
        // A failing logger must not turn a cache operation into a crash.
      }
    }
  }
  void add(CacheReport::Kind kind, std::string file, std::string message) {
    reports_.push_back({kind, std::move(file), std::move(message)});
  }

 private:
  const ReportFn& sink_;
  std::vector<CacheReport> reports_;
};

DiskKvCache::DiskKvCache(CacheOptions options)
    : options_(prepared(std::move(options))), lock_(options_.dir) {
  stats_.budget_bytes = options_.budget_bytes;
  PendingReports reports(options_.report);
  std::lock_guard lock(mu_);
  struct stat st;
  if (::stat(options_.dir.c_str(), &st) == 0 &&
      ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0 || st.st_uid != ::geteuid()))
    reports.add(CacheReport::Kind::kWarning, "",
                "the KV cache directory " + options_.dir.string() +
                    " is writable by other users or owned by another: whoever can write there can "
                    "place tool-call text that gets replayed into prompts");
  index_directory(reports);
  std::vector<std::string> evicted;
  evict_locked("", evicted, reports);
}

int64_t DiskKvCache::now() const {
  return options_.clock ? options_.clock() : static_cast<int64_t>(std::time(nullptr));
}

void DiskKvCache::index_directory(PendingReports& reports) {
  std::error_code ec;
  fs::directory_iterator it(options_.dir, ec), end;
  if (ec)
    throw KvCacheError("kv cache: cannot list " + options_.dir.string() + ": " + ec.message());
  std::vector<std::string> names;
  for (; it != end; it.increment(ec)) {
    if (ec)
      throw KvCacheError("kv cache: cannot list " + options_.dir.string() + ": " + ec.message());
    names.push_back(it->path().filename().string());
  }
  std::sort(names.begin(), names.end());  // a stable order for reports
  for (const std::string& name : names) {
    if (is_temp_name(name)) {
      // The directory lock makes this process the only writer, so any temp file is the remains of
      // an interrupted write: it never counted as an entry, and now it only takes space.
      std::error_code ignored;
      fs::remove(options_.dir / name, ignored);
      reports.add(CacheReport::Kind::kStaleTemp, name,
                  "temp file of an interrupted write: deleted");
    } else if (is_entry_name(name)) {
      index_file(name, reports);
    }
    // Anything else (the lock file, files the user put there) is not the cache's business.
  }
}

void DiskKvCache::index_file(const std::string& name, PendingReports& reports) {
  const fs::path path = options_.dir / name;
  UniqueFd fd;
  FileStat st;
  try {
    fd = open_file(path, /*writable=*/false);
    st = stat_file(fd.get(), path);
    FileHead head = read_head(fd.get(), name, st.bytes);
    if (!head.usage)
      reports.add(CacheReport::Kind::kWarning, name,
                  "usage block damaged (an interrupted hit update): hit count reset");
    add_entry_locked(make_entry(name, head, st.bytes));
  } catch (const EntryFormatError& e) {
    if (e.problem() == Problem::kDamaged) {
      std::error_code ignored;
      fs::remove(path, ignored);
      reports.add(CacheReport::Kind::kDamaged, name,
                  std::string("damaged entry file deleted: ") + e.what());
    } else {
      unusable_[name] = {st.bytes, st.modified};
      total_bytes_ += st.bytes;
      reports.add(CacheReport::Kind::kUnusable, name,
                  std::string("kept but never loaded: ") + e.what());
    }
  } catch (const KvCacheError& e) {
    reports.add(CacheReport::Kind::kUnreadable, name, std::string("skipped: ") + e.what());
  }
}

DiskKvCache::FileHead DiskKvCache::read_head(int fd, const std::string& name, uint64_t size) const {
  const fs::path path = options_.dir / name;
  FileHead head;
  head.prefix.resize(std::min<uint64_t>(size, kMetadataOffset));
  read_at(fd, 0, head.prefix, path);
  head.header = decode_header(head.prefix, options_.model, size);
  head.usage = decode_usage(std::span(head.prefix).subspan(kUsageOffset, kUsageBytes));
  head.metadata_bytes.resize(head.header.metadata_bytes());
  read_at(fd, kMetadataOffset, head.metadata_bytes, path);
  head.metadata = decode_metadata(head.header, head.prefix, head.metadata_bytes);
  if (entry_name(options_.model, head.metadata.tokens, head.metadata.key_text) != name)
    throw EntryFormatError(Problem::kDamaged, "the file name does not match its contents");
  return head;
}

DiskKvCache::Entry DiskKvCache::make_entry(const std::string& name, const FileHead& head,
                                           uint64_t file_bytes) const {
  Entry e;
  EntryInfo& info = e.info;
  info.name = name;
  info.token_count = head.header.token_count;
  info.text_bytes = head.header.text_bytes;
  info.file_bytes = file_bytes;
  info.reason = head.header.reason;
  info.key_kind = head.header.key_kind;
  info.created = head.header.created;
  info.hits = head.usage ? head.usage->hits : 0;
  info.last_used = head.usage ? head.usage->last_used : head.header.created;
  info.tool_calls = head.metadata.tool_calls.size();
  e.tokens = head.metadata.tokens;
  e.key_text = head.metadata.key_text;
  std::set<std::string> ids;
  for (const ToolCallRecord& r : head.metadata.tool_calls) ids.insert(r.id);
  e.tool_ids.assign(ids.begin(), ids.end());
  return e;
}

void DiskKvCache::add_entry_locked(Entry entry) {
  remove_entry_locked(entry.info.name);
  unusable_.erase(entry.info.name);  // a file replaced by this process's own entry
  total_bytes_ += entry.info.file_bytes;
  for (const std::string& id : entry.tool_ids) tool_index_[id].push_back(entry.info.name);
  std::string name = entry.info.name;
  entries_.emplace(std::move(name), std::move(entry));
}

void DiskKvCache::remove_entry_locked(const std::string& name) {
  auto it = entries_.find(name);
  if (it == entries_.end()) return;
  total_bytes_ -= it->second.info.file_bytes;
  for (const std::string& id : it->second.tool_ids) {
    auto t = tool_index_.find(id);
    std::erase(t->second, name);
    if (t->second.empty()) tool_index_.erase(t);
  }
  entries_.erase(it);
}

void DiskKvCache::evict_locked(const std::string& protected_name, std::vector<std::string>& evicted,
                               PendingReports& reports) {
  if (total_bytes_ <= options_.budget_bytes) return;
  std::vector<EvictionCandidate> candidates;
  for (const auto& [name, e] : entries_)
    candidates.push_back({name, e.info.file_bytes, e.info.token_count, e.info.hits,
                          e.info.last_used, true, name == protected_name});
  for (const auto& [name, f] : unusable_)
    candidates.push_back({name, f.bytes, 0, 0, f.modified, false, false});
  for (const std::string& name : choose_evictions(candidates, options_.budget_bytes, now())) {
    if (::unlink((options_.dir / name).c_str()) != 0 && errno != ENOENT) {
      reports.add(CacheReport::Kind::kWarning, name,
                  "cannot delete to keep the budget: " + describe_errno(errno) +
                      "; the cache stays over its budget");
      return;
    }
    std::string what = "deleted to keep the budget";
    if (auto it = entries_.find(name); it != entries_.end()) {
      what +=
          " (" + describe(it->second.info) + ", " + std::to_string(it->second.info.hits) + " hits)";
      remove_entry_locked(name);
    } else {
      total_bytes_ -= unusable_.at(name).bytes;
      unusable_.erase(name);
      what += " (a file this process cannot use)";
    }
    ++stats_.evictions;
    evicted.push_back(name);
    reports.add(CacheReport::Kind::kEvicted, name, what);
  }
}

std::optional<EntryInfo> DiskKvCache::lookup(std::span<const int32_t> tokens) const {
  std::lock_guard lock(mu_);
  ++stats_.lookups;
  const Entry* best = nullptr;
  for (const auto& [name, e] : entries_) {
    if (e.tokens.size() > tokens.size() ||
        !std::equal(e.tokens.begin(), e.tokens.end(), tokens.begin()))
      continue;
    if (best == nullptr || e.tokens.size() > best->tokens.size() ||
        (e.tokens.size() == best->tokens.size() && e.info.created > best->info.created))
      best = &e;
  }
  if (best == nullptr) return std::nullopt;
  ++stats_.lookup_hits;
  return best->info;
}

std::optional<EntryInfo> DiskKvCache::lookup_text(std::string_view text) const {
  std::lock_guard lock(mu_);
  ++stats_.lookups;
  const Entry* best = nullptr;
  auto better = [](const Entry& a, const Entry& b) {
    if (a.key_text.size() != b.key_text.size()) return a.key_text.size() > b.key_text.size();
    if (a.info.created != b.info.created) return a.info.created > b.info.created;
    return a.tokens.size() > b.tokens.size();
  };
  for (const auto& [name, e] : entries_)
    if (text.starts_with(e.key_text) && (best == nullptr || better(e, *best))) best = &e;
  if (best == nullptr) return std::nullopt;
  ++stats_.lookup_hits;
  return best->info;
}

bool DiskKvCache::contains(std::span<const int32_t> tokens, std::string_view key_text) const {
  std::string name = entry_name(options_.model, tokens, key_text);
  std::lock_guard lock(mu_);
  return entries_.contains(name);
}

void DiskKvCache::refuse_file(const std::string& name, int fd, const KvCacheError& error,
                              PendingReports& reports) {
  const fs::path path = options_.dir / name;
  const auto* format = dynamic_cast<const EntryFormatError*>(&error);
  std::lock_guard lock(mu_);
  // Only the file that failed is acted on: if a store replaced it meanwhile, the new one stays.
  bool still_there = fd >= 0 && is_same_file(fd, path);
  if (format != nullptr && format->problem() == Problem::kDamaged) {
    if (still_there) {
      ::unlink(path.c_str());
      remove_entry_locked(name);
    }
    reports.add(CacheReport::Kind::kDamaged, name,
                std::string("refused and deleted: ") + error.what());
  } else if (format != nullptr) {
    if (still_there) {
      remove_entry_locked(name);
      FileStat st = stat_file(fd, path);
      unusable_[name] = {st.bytes, st.modified};
      total_bytes_ += st.bytes;
    }
    reports.add(CacheReport::Kind::kUnusable, name,
                std::string("refused, kept but never loaded: ") + error.what());
  } else {
    if (still_there || fd < 0) remove_entry_locked(name);
    reports.add(CacheReport::Kind::kUnreadable, name, std::string("refused: ") + error.what());
  }
}

void DiskKvCache::touch_usage(int fd, const std::string& name, const EntryUsage& usage,
                              PendingReports& reports) const {
  // Not fsync'ed: losing a hit count to a crash costs nothing but eviction precision.
  try {
    write_at(fd, kUsageOffset, encode_usage(usage), options_.dir / name);
  } catch (const KvCacheError& e) {
    reports.add(CacheReport::Kind::kWarning, name,
                std::string("cannot record the hit: ") + e.what());
  }
}

LoadedEntry DiskKvCache::load(const EntryInfo& entry) {
  PendingReports reports(options_.report);
  const fs::path path = options_.dir / entry.name;
  UniqueFd fd;
  {
    std::lock_guard lock(mu_);
    if (!entries_.contains(entry.name)) {
      ++stats_.load_failures;
      throw KvCacheError("kv cache: entry " + entry.name +
                         " is no longer in the cache (evicted or deleted)");
    }
    try {
      fd = open_file(path, /*writable=*/true);
    } catch (const KvCacheError& e) {
      remove_entry_locked(entry.name);
      ++stats_.load_failures;
      reports.add(CacheReport::Kind::kUnreadable, entry.name, std::string("refused: ") + e.what());
      throw;
    }
  }
  LoadedEntry loaded;
  EntryUsage usage;
  try {
    FileStat st = stat_file(fd.get(), path);
    FileHead head = read_head(fd.get(), entry.name, st.bytes);
    loaded.payload.resize(head.header.payload_bytes);
    read_at(fd.get(), head.header.payload_offset(), loaded.payload, path);
    Digest stored;
    read_at(fd.get(), head.header.payload_offset() + head.header.payload_bytes, stored, path);
    Digest actual = Sha256()
                        .update(std::span(head.prefix).first(kHeaderBytes))
                        .update(head.metadata_bytes)
                        .update(loaded.payload)
                        .finish();
    if (actual != stored)
      throw EntryFormatError(Problem::kDamaged, "file checksum mismatch (damaged on disk)");
    Entry e = make_entry(entry.name, head, st.bytes);
    usage = {e.info.hits + 1, now()};
    loaded.info = e.info;
    loaded.info.hits = usage.hits;
    loaded.info.last_used = usage.last_used;
    loaded.tokens = std::move(head.metadata.tokens);
    loaded.key_text = std::move(head.metadata.key_text);
    loaded.tool_calls = std::move(head.metadata.tool_calls);
  } catch (const KvCacheError& e) {
    refuse_file(entry.name, fd.get(), e, reports);
    std::lock_guard lock(mu_);
    ++stats_.load_failures;
    throw KvCacheError("kv cache: entry " + entry.name + " refused: " + e.what(), e.sys_errno());
  }
  touch_usage(fd.get(), entry.name, usage, reports);
  std::lock_guard lock(mu_);
  ++stats_.loads;
  if (auto it = entries_.find(entry.name); it != entries_.end() && is_same_file(fd.get(), path)) {
    it->second.info.hits = usage.hits;
    it->second.info.last_used = usage.last_used;
  }
  return loaded;
}

StoreResult DiskKvCache::store(const StoreRequest& request) {
  if (request.tokens.empty() || request.payload.empty() || request.key_text.empty())
    throw KvCacheError("kv cache: an entry needs tokens, key text and a payload");
  PendingReports reports(options_.report);
  const std::string name = entry_name(options_.model, request.tokens, request.key_text);
  const fs::path path = options_.dir / name;

  // One record per id, the request's own winning over one it repeats.
  std::map<std::string, std::string> records;
  for (const ToolCallRecord& r : request.tool_calls)
    if (!r.id.empty() && r.id.size() <= kMaxToolIdBytes && !r.dsml.empty()) records[r.id] = r.dsml;

  EntryUsage usage{0, now()};
  bool merge_existing = false;
  uint64_t temp_number = 0;
  {
    std::lock_guard lock(mu_);
    temp_number = temp_counter_++;
    if (auto it = entries_.find(name); it != entries_.end()) {
      const std::vector<std::string>& have = it->second.tool_ids;
      bool brings_new = std::any_of(records.begin(), records.end(), [&](const auto& r) {
        return !std::binary_search(have.begin(), have.end(), r.first);
      });
      usage.hits = it->second.info.hits;
      if (!brings_new) {
        it->second.info.last_used = usage.last_used;
        StoreResult result{
            StoreResult::Status::kAlreadyCached, it->second.info, it->second.info.file_bytes, {}};
        try {
          UniqueFd fd = open_file(path, /*writable=*/true);
          touch_usage(fd.get(), name, usage, reports);
        } catch (const KvCacheError& e) {
          reports.add(CacheReport::Kind::kWarning, name,
                      std::string("cannot refresh the last use: ") + e.what());
        }
        return result;
      }
      merge_existing = true;
    }
  }
  if (merge_existing) {
    // The existing file's records stay (the server may have forgotten them by now); a file that
    // cannot be read is simply replaced.
    try {
      UniqueFd fd = open_file(path, /*writable=*/false);
      FileHead head = read_head(fd.get(), name, stat_file(fd.get(), path).bytes);
      for (ToolCallRecord& r : head.metadata.tool_calls) records.try_emplace(r.id, r.dsml);
    } catch (const KvCacheError&) {
    }
  }

  EntryHeader header;
  header.reason = request.reason;
  header.key_kind = request.key_kind;
  header.model = options_.model;
  header.created = usage.last_used;
  EntryMetadata metadata;
  metadata.tokens.assign(request.tokens.begin(), request.tokens.end());
  metadata.key_text = request.key_text;
  for (auto& [id, dsml] : records) metadata.tool_calls.push_back({id, dsml});
  std::vector<uint8_t> head = encode_entry_head(header, usage, metadata, request.payload.size());
  const uint64_t bytes = header.file_bytes();
  if (bytes > options_.budget_bytes) return {StoreResult::Status::kOverBudget, {}, bytes, {}};
  Digest checksum = Sha256()
                        .update(std::span(head).first(kHeaderBytes))
                        .update(std::span(head).subspan(kMetadataOffset))
                        .update(request.payload)
                        .finish();

  const std::string temp_name = name + std::string(kTempMarker) + std::to_string(::getpid()) + "." +
                                std::to_string(temp_number);
  const std::span<const uint8_t> pieces[] = {head, request.payload, checksum};
  std::string warning;
  try {
    warning = write_file_atomically(options_.dir, name, temp_name, pieces);
  } catch (const KvCacheError& e) {
    std::lock_guard lock(mu_);
    ++stats_.store_failures;
    throw KvCacheError("kv cache: cannot store an entry of " +
                           std::to_string(request.tokens.size()) + " tokens (" +
                           std::to_string(bytes) + " bytes): " + e.what() +
                           "; existing entries are unchanged",
                       e.sys_errno());
  }
  if (!warning.empty()) reports.add(CacheReport::Kind::kWarning, name, warning);

  Entry entry;
  entry.info = {name,          header.token_count,        header.text_bytes, bytes,
                header.reason, header.key_kind,           header.created,    usage.last_used,
                usage.hits,    metadata.tool_calls.size()};
  entry.tokens = std::move(metadata.tokens);
  entry.key_text = std::move(metadata.key_text);
  for (const auto& [id, dsml] : records) entry.tool_ids.push_back(id);  // sorted: a std::map

  StoreResult result{StoreResult::Status::kWritten, entry.info, bytes, {}};
  std::lock_guard lock(mu_);
  add_entry_locked(std::move(entry));
  ++stats_.stores;
  stats_.stored_bytes += bytes;
  evict_locked(name, result.evicted, reports);
  return result;
}

bool DiskKvCache::erase(const std::string& name) {
  std::lock_guard lock(mu_);
  if (!entries_.contains(name)) return false;
  if (::unlink((options_.dir / name).c_str()) != 0 && errno != ENOENT)
    throw KvCacheError(
        "kv cache: cannot delete " + (options_.dir / name).string() + ": " + describe_errno(errno),
        errno);
  remove_entry_locked(name);
  return true;
}

std::vector<ToolCallRecord> DiskKvCache::find_tool_calls(std::span<const std::string> ids) {
  PendingReports reports(options_.report);
  std::map<std::string, std::set<std::string>> wanted_by_file;
  {
    std::lock_guard lock(mu_);
    for (const std::string& id : ids)
      if (auto it = tool_index_.find(id); it != tool_index_.end())
        for (const std::string& name : it->second) wanted_by_file[name].insert(id);
  }
  std::map<std::string, std::string> found;
  for (const auto& [name, wanted] : wanted_by_file) {
    const fs::path path = options_.dir / name;
    UniqueFd fd;
    try {
      fd = open_file(path, /*writable=*/false);
      FileHead head = read_head(fd.get(), name, stat_file(fd.get(), path).bytes);
      for (ToolCallRecord& r : head.metadata.tool_calls)
        if (wanted.contains(r.id)) found.try_emplace(r.id, std::move(r.dsml));
    } catch (const KvCacheError& e) {
      refuse_file(name, fd.get(), e, reports);
    }
  }
  std::vector<ToolCallRecord> records;
  for (auto& [id, dsml] : found) records.push_back({id, std::move(dsml)});
  return records;
}

std::vector<EntryInfo> DiskKvCache::entries() const {
  std::lock_guard lock(mu_);
  std::vector<EntryInfo> out;
  for (const auto& [name, e] : entries_) out.push_back(e.info);
  std::sort(out.begin(), out.end(), [](const EntryInfo& a, const EntryInfo& b) {
    return a.created != b.created ? a.created > b.created : a.name < b.name;
  });
  return out;
}

CacheStats DiskKvCache::stats() const {
  std::lock_guard lock(mu_);
  CacheStats s = stats_;
  s.entries = entries_.size();
  s.unusable_files = unusable_.size();
  s.bytes = total_bytes_;
  return s;
}

}  // namespace magnetar::kvcache
