#include "chat/prompt.h"

#include "chat/template_strings.h"

namespace magnetar::chat {

void Prompt::add_text(std::string_view text) {
  if (text.empty()) return;
  if (!pieces_.empty() && !pieces_.back().is_control) {
    pieces_.back().text += text;
  } else {
    pieces_.push_back({std::string(text), false});
  }
}

void Prompt::add_control(std::string_view token) { pieces_.push_back({std::string(token), true}); }

void Prompt::add_template(std::string_view text) {
  while (!text.empty()) {
    size_t best = std::string_view::npos;
    std::string_view best_token;
    for (std::string_view token : kControlStrings) {
      size_t at = text.find(token);
      if (at < best) {
        best = at;
        best_token = token;
      }
    }
    if (best == std::string_view::npos) {
      add_text(text);
      return;
    }
    add_text(text.substr(0, best));
    add_control(best_token);
    text.remove_prefix(best + best_token.size());
  }
}

std::string Prompt::text() const {
  std::string out;
  for (const PromptPiece& p : pieces_) out += p.text;
  return out;
}

}  // namespace magnetar::chat
