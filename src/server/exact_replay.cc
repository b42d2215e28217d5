#include "server/exact_replay.h"

#include <string>

#include "chat/dsml_writer.h"
#include "chat/renderer.h"
#include "chat/template_strings.h"

namespace magnetar::server {
namespace {

// The prompt's text and, per byte, whether it belongs to a control piece.
struct MaskedText {
  std::string text;
  std::vector<bool> control;
};

MaskedText masked(const chat::Prompt& prompt) {
  MaskedText m;
  for (const chat::PromptPiece& p : prompt.pieces()) {
    m.text += p.text;
    m.control.insert(m.control.end(), p.text.size(), p.is_control);
  }
  return m;
}

// The first occurrence of `needle` at or after `from` whose control bytes line up with the
// haystack's (so that client text that happens to spell a block never matches).
size_t find_block(const MaskedText& haystack, const MaskedText& needle, size_t from) {
  for (size_t at = haystack.text.find(needle.text, from); at != std::string::npos;
       at = haystack.text.find(needle.text, at + 1)) {
    if (std::equal(needle.control.begin(), needle.control.end(), haystack.control.begin() + at)) {
      return at;
    }
  }
  return std::string::npos;
}

// `prompt` with bytes [begin, end) replaced by `replacement`; nullopt when a control piece
// straddles a boundary.
std::optional<chat::Prompt> splice(const chat::Prompt& prompt, size_t begin, size_t end,
                                   const chat::Prompt& replacement) {
  chat::Prompt out;
  size_t start = 0;
  bool inserted = false;
  auto insert = [&] {
    for (const chat::PromptPiece& r : replacement.pieces()) {
      r.is_control ? out.add_control(r.text) : out.add_text(r.text);
    }
    inserted = true;
  };
  for (const chat::PromptPiece& p : prompt.pieces()) {
    const size_t stop = start + p.text.size();
    if (p.is_control) {
      if ((begin > start && begin < stop) || (end > start && end < stop)) return std::nullopt;
      if (stop <= begin || start >= end) {
        if (start >= end && !inserted) insert();
        out.add_control(p.text);
      }
    } else {
      std::string_view t = p.text;
      if (start < begin) out.add_text(t.substr(0, std::min(stop, begin) - start));
      if (!inserted && stop >= begin && start <= end && stop > end) insert();
      if (stop > end) out.add_text(t.substr(std::max(start, end) - start));
    }
    start = stop;
  }
  if (!inserted) insert();
  return out;
}

}  // namespace

chat::Prompt dsml_block_prompt(std::string_view block) {
  chat::Prompt p;
  for (size_t at = block.find(chat::kDsml); at != std::string_view::npos;
       at = block.find(chat::kDsml)) {
    p.add_text(block.substr(0, at));
    p.add_control(chat::kDsml);
    block.remove_prefix(at + chat::kDsml.size());
  }
  p.add_text(block);
  return p;
}

ReplayedPrompt render_with_replay(const std::vector<chat::Message>& messages,
                                  const chat::RenderOptions& options, kvcache::ToolIdMap* memory) {
  ReplayedPrompt out;
  out.prompt = chat::render_prompt(messages, options);
  size_t cursor = 0;
  for (const chat::Message& m : messages) {
    if (m.role != chat::Role::kAssistant || m.tool_calls.empty()) continue;
    std::vector<std::string> ids;
    for (const chat::ToolCall& c : m.tool_calls) ids.push_back(c.id);
    std::optional<std::string> sampled =
        memory != nullptr ? memory->replay_block(ids) : std::nullopt;
    chat::Prompt canonical;
    chat::append_tool_calls_dsml(canonical, m.tool_calls, options.reject_non_object_arguments);
    MaskedText prompt_text = masked(out.prompt), block = masked(canonical);
    size_t at = find_block(prompt_text, block, cursor);
    if (at == std::string::npos) {
      ++out.canonical_turns;  // e.g. a turn the renderer dropped; nothing to replace
      continue;
    }
    std::optional<chat::Prompt> replaced;
    if (sampled) {
      replaced = splice(out.prompt, at, at + block.text.size(), dsml_block_prompt(*sampled));
    }
    if (replaced) {
      out.prompt = std::move(*replaced);
      cursor = at + sampled->size();
      ++out.replayed_turns;
    } else {
      cursor = at + block.text.size();
      ++out.canonical_turns;
    }
  }
  return out;
}

}  // namespace magnetar::server
