#include "server/live_sessions.h"

#include <algorithm>

#include "chat/template_strings.h"
#include "engine/prompt_tokens.h"

namespace magnetar::server {
namespace {

// Empty slots are taken first, then the least recently used.
uint64_t eviction_rank(const Slot& s) { return s.session->processed() == 0 ? 0 : s.last_used + 1; }

}  // namespace

const char* source_name(Placement::Source source) {
  switch (source) {
    case Placement::Source::kTokenPrefix:
      return "token_prefix";
    case Placement::Source::kTextPrefix:
      return "text_prefix";
    case Placement::Source::kAlias:
      return "visible_prefix";
    default:
      return "none";
  }
}

std::vector<std::string> visible_aliases(const std::string& prompt_text, bool tools_active,
                                         const std::string& content,
                                         const std::string& sampled_dsml,
                                         const std::string& unevaluated) {
  if (!prompt_text.ends_with(chat::kThink)) return {};
  std::string visible = std::string(chat::kEndThink) + content + sampled_dsml;
  if (!visible.ends_with(unevaluated)) return {};
  visible.resize(visible.size() - unevaluated.size());
  std::string kept = prompt_text + visible;
  std::string dropped = prompt_text.substr(0, prompt_text.size() - chat::kThink.size()) + visible;
  if (tools_active) return {kept, dropped};
  return {dropped, kept};
}

LiveSessions::LiveSessions(engine::Engine& engine, int count) : engine_(engine) {
  for (int i = 0; i < count; ++i) {
    auto slot = std::make_unique<Slot>();
    slot->index = i;
    slot->session = engine.new_session();
    slots_.push_back(std::move(slot));
  }
}

std::optional<Placement> LiveSessions::place(const chat::Prompt& prompt,
                                             const std::string& prompt_text,
                                             const std::vector<int32_t>& prompt_tokens) {
  std::optional<Placement> best;
  Slot* victim = nullptr;
  for (auto& owned : slots_) {
    Slot& s = *owned;
    if (s.busy) continue;
    std::span<const int32_t> held = s.processed();
    if (victim == nullptr || eviction_rank(s) < eviction_rank(*victim)) victim = &s;
    if (held.empty()) continue;
    const int64_t n = static_cast<int64_t>(held.size());
    if (best && best->reused >= n) continue;
    if (held.size() <= prompt_tokens.size() &&
        std::equal(held.begin(), held.end(), prompt_tokens.begin())) {
      best = Placement{&s, prompt_tokens, n, Placement::Source::kTokenPrefix};
      continue;
    }
    // Byte prefixes: the decoded text first, then the aliases.
    std::vector<std::pair<const std::string*, Placement::Source>> texts = {
        {&s.decoded, Placement::Source::kTextPrefix}};
    for (const std::string& a : s.aliases) texts.push_back({&a, Placement::Source::kAlias});
    for (const auto& [text, source] : texts) {
      if (text->empty() || !prompt_text.starts_with(*text)) continue;
      std::optional<std::vector<int32_t>> rest =
          engine::prompt_tokens_from(engine_.tokenizer(), prompt, text->size());
      if (!rest) continue;
      std::vector<int32_t> tokens(held.begin(), held.end());
      tokens.insert(tokens.end(), rest->begin(), rest->end());
      best = Placement{&s, std::move(tokens), n, source};
      break;
    }
  }
  if (best) return best;
  if (victim == nullptr) return std::nullopt;
  return Placement{victim, prompt_tokens, 0, Placement::Source::kNone};
}

void LiveSessions::release(Slot& slot, std::vector<std::string> aliases) {
  std::span<const int32_t> held = slot.processed();
  std::vector<int32_t> tokens(held.begin(), held.end());
  slot.session->set_tokens(tokens);  // drops a token appended but never evaluated
  slot.decoded = engine_.tokenizer().decode(tokens);
  std::erase_if(aliases, [&](const std::string& a) { return a == slot.decoded; });
  slot.aliases = std::move(aliases);
  slot.busy = false;
  touch(slot);
}

}  // namespace magnetar::server
