#include "server/disk_state_store.h"

#include <chrono>
#include <stdexcept>

#include "chat/template_strings.h"
#include "server/log.h"

namespace magnetar::server {
namespace {

// Each refused entry leaves the index, so the loop in restore() ends anyway; the bound keeps a
// directory full of bad files from stalling one request for long.
constexpr int kMaxLoadAttempts = 4;

int32_t required_token(const tokenizer::Tokenizer& tokenizer, std::string_view text) {
  std::optional<int32_t> id = tokenizer.token_id(text);
  if (!id) throw std::invalid_argument("the model's vocabulary lacks " + std::string(text));
  return *id;
}

const char* report_kind_name(kvcache::CacheReport::Kind kind) {
  using Kind = kvcache::CacheReport::Kind;
  switch (kind) {
    case Kind::kDamaged:
      return "damaged";
    case Kind::kUnusable:
      return "unusable";
    case Kind::kUnreadable:
      return "unreadable";
    case Kind::kStaleTemp:
      return "stale temp file";
    case Kind::kEvicted:
      return "evicted";
    case Kind::kWarning:
      break;
  }
  return "warning";
}

double mib(uint64_t bytes) { return static_cast<double>(bytes) / 1048576.0; }

double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

}  // namespace

DiskStateStore::DiskStateStore(const DiskStoreOptions& options, const engine::Engine& engine,
                               kvcache::ToolIdMap* tools, Metrics& metrics)
    : policy_(options.checkpoints),
      tools_(tools),
      metrics_(metrics),
      user_token_(required_token(engine.tokenizer(), chat::kUser)),
      assistant_token_(required_token(engine.tokenizer(), chat::kAssistant)),
      dir_(options.dir.string()),
      cache_({.dir = options.dir,
              .budget_bytes = options.budget_bytes,
              .model = engine.identity(),
              .report = [this](const kvcache::CacheReport& r) { on_report(r); }}) {
  kvcache::CacheStats s = cache_.stats();
  log("kv cache: {}: {} entries, {:.1f} of {:.1f} MiB", dir_, s.entries, mib(s.bytes),
      mib(s.budget_bytes));
  publish_usage();
}

void DiskStateStore::on_report(const kvcache::CacheReport& report) {
  log("kv cache: {} {}: {}", report_kind_name(report.kind),
      report.file.empty() ? dir_ : report.file, report.message);
  if (report.kind == kvcache::CacheReport::Kind::kDamaged) metrics_.count_disk_damaged();
  if (report.kind == kvcache::CacheReport::Kind::kEvicted) metrics_.count_disk_eviction();
}

void DiskStateStore::publish_usage() {
  kvcache::CacheStats s = cache_.stats();
  metrics_.set_disk_usage(s.bytes, s.budget_bytes, s.entries);
}

void DiskStateStore::erase(const std::string& name) {
  try {
    cache_.erase(name);
  } catch (const kvcache::KvCacheError& e) {
    log("kv cache: {}", e.what());
  }
}

std::optional<size_t> DiskStateStore::restore(std::string_view prompt_text,
                                              engine::Session& session) {
  for (int attempt = 0; attempt < kMaxLoadAttempts; ++attempt) {
    std::optional<kvcache::EntryInfo> hit = cache_.lookup_text(prompt_text);
    if (!hit || !policy_.may_load(static_cast<int64_t>(hit->token_count))) break;
    std::optional<size_t> covered = load_into(*hit, prompt_text, session);
    publish_usage();
    if (covered) return covered;
  }
  metrics_.count_disk_miss();
  return std::nullopt;
}

std::optional<size_t> DiskStateStore::load_into(const kvcache::EntryInfo& hit,
                                                std::string_view prompt_text,
                                                engine::Session& session) {
  const auto start = std::chrono::steady_clock::now();
  kvcache::LoadedEntry entry;
  try {
    entry = cache_.load(hit);
  } catch (const kvcache::KvCacheError&) {
    // Refused (and reported, with the file and the reason) or evicted since the lookup.
    return std::nullopt;
  }
  if (!prompt_text.starts_with(entry.key_text)) return std::nullopt;  // cannot happen: the name
  try {
    session.load(entry.payload);
  } catch (const engine::SessionError& e) {
    // The file's checksums hold, so the payload is what was written, but this engine cannot use
    // it (e.g. a build whose state layout changed): it never will, so it goes.
    log("kv cache: the engine refused {}: {}; deleted", entry.info.name, e.what());
    metrics_.count_disk_damaged();
    erase(entry.info.name);
    return std::nullopt;
  }
  if (session.tokens() != entry.tokens) {
    // The state would continue a different text than the key says (kv-cache.md §10 step 4).
    log("kv cache: {} holds a state of other tokens than its key; deleted", entry.info.name);
    session.reset();
    metrics_.count_disk_damaged();
    erase(entry.info.name);
    return std::nullopt;
  }
  if (tools_ != nullptr) tools_->remember(entry.tool_calls);
  const int64_t tokens = static_cast<int64_t>(entry.tokens.size());
  log("kv cache: restored {} tokens from {} ({} checkpoint, hit {}) in {:.1f} ms", tokens,
      entry.info.name, kvcache::reason_name(entry.info.reason), entry.info.hits, ms_since(start));
  if (policy_.consume_after_load(tokens)) {
    log("kv cache: consumed {}: the live session holds its {} tokens now", entry.info.name, tokens);
    erase(entry.info.name);
  }
  metrics_.count_disk_restore(tokens);
  return entry.key_text.size();
}

std::optional<int64_t> DiskStateStore::cold_save_point(std::span<const int32_t> prompt) {
  const int64_t length = policy_.cold_save_length(prompt, user_token_, assistant_token_);
  if (length == 0) return std::nullopt;
  return length;
}

std::optional<int64_t> DiskStateStore::continued_save_point(int64_t processed) {
  const int64_t step = policy_.continued_step();
  if (step == 0) return std::nullopt;
  int64_t next = (processed / step + 1) * step;
  // Multiples below the minimum are not due; the first one at or above it is.
  while (!policy_.continued_save_due(next, processed)) next += step;
  return next;
}

void DiskStateStore::save(kvcache::SaveReason reason, const engine::Session& session,
                          std::string_view key_text, kvcache::KeyKind kind) {
  const int64_t n = session.processed();
  if (!policy_.evict_save_due(n) || key_text.empty()) return;
  const std::span<const int32_t> tokens = std::span(session.tokens()).first(n);
  std::vector<kvcache::ToolCallRecord> records;
  if (tools_ != nullptr) records = tools_->records_within(key_text);
  // The same state under the same key is on disk already (e.g. a cold and a continued save at
  // one length): skip serialising the payload.
  if (records.empty() && cache_.contains(tokens, key_text)) return;
  const auto start = std::chrono::steady_clock::now();
  try {
    const std::vector<uint8_t> payload = session.save();
    kvcache::StoreResult r = cache_.store({.tokens = tokens,
                                           .key_text = key_text,
                                           .payload = payload,
                                           .tool_calls = records,
                                           .reason = reason,
                                           .key_kind = kind});
    switch (r.status) {
      case kvcache::StoreResult::Status::kWritten:
        metrics_.count_disk_save(kvcache::reason_name(reason));
        log("kv cache: saved {} checkpoint of {} tokens as {} ({:.1f} MiB) in {:.1f} ms",
            kvcache::reason_name(reason), n, r.entry.name, mib(r.bytes), ms_since(start));
        break;
      case kvcache::StoreResult::Status::kAlreadyCached:
        break;
      case kvcache::StoreResult::Status::kOverBudget:
        metrics_.count_disk_save_failure();
        log("kv cache: {} checkpoint of {} tokens not saved: its {:.1f} MiB exceed the budget of "
            "{:.1f} MiB (--kv-disk-space-mb)",
            kvcache::reason_name(reason), n, mib(r.bytes), mib(cache_.stats().budget_bytes));
        break;
    }
  } catch (const std::exception& e) {  // a KvCacheError naming the file and cause, or no memory
    metrics_.count_disk_save_failure();
    log("kv cache: {} save failed: {}", kvcache::reason_name(reason), e.what());
  }
  publish_usage();
}

void DiskStateStore::recall_tool_ids(const std::vector<std::string>& ids) {
  if (tools_ == nullptr || ids.empty()) return;
  try {
    std::vector<kvcache::ToolCallRecord> records = cache_.find_tool_calls(ids);
    if (!records.empty()) tools_->remember(records);
  } catch (const kvcache::KvCacheError& e) {
    log("kv cache: tool-call ids not recalled: {}", e.what());
  }
}

}  // namespace magnetar::server
