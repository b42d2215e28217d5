#include "server/dsml_guard.h"

#include "chat/template_strings.h"

namespace magnetar::server {
namespace {

constexpr std::string_view kBlockOpen = "<｜DSML｜tool_calls>";
constexpr std::string_view kBlockClose = "</｜DSML｜tool_calls>";
constexpr std::string_view kParamClose = "</｜DSML｜parameter>";
constexpr std::string_view kStringTrue = "string=\"true\">";
constexpr std::string_view kStringFalse = "string=\"false\">";
constexpr size_t kRecentMax = 64;

// The length of the longest suffix of `text` that is a proper prefix of `marker`.
size_t partial_suffix(std::string_view text, std::string_view marker) {
  for (size_t n = std::min(text.size(), marker.size() - 1); n > 0; --n) {
    if (text.substr(text.size() - n) == marker.substr(0, n)) return n;
  }
  return 0;
}

}  // namespace

DsmlGuard::DsmlGuard(bool thinking) : state_(thinking ? State::kReasoning : State::kContent) {}

void DsmlGuard::feed(std::string_view text) {
  for (char c : text) feed_byte(c);
}

void DsmlGuard::enter(State state) {
  state_ = state;
  recent_.clear();
  in_literal_ = false;
  escaped_ = false;
}

void DsmlGuard::feed_byte(char c) {
  recent_ += c;
  if (recent_.size() > kRecentMax) recent_.erase(0, recent_.size() - kRecentMax);
  std::string_view r = recent_;
  switch (state_) {
    case State::kReasoning:
      if (r.ends_with(chat::kEndThink)) enter(State::kContent);
      return;
    case State::kContent:
      if (r.ends_with(kBlockOpen)) enter(State::kStructure);
      return;
    case State::kStructure:
      if (r.ends_with(kStringTrue)) {
        enter(State::kStringValue);
      } else if (r.ends_with(kStringFalse)) {
        enter(State::kJsonValue);
      } else if (r.ends_with(kBlockClose)) {
        enter(State::kClosed);
      }
      return;
    case State::kStringValue:
      if (r.ends_with(kParamClose)) enter(State::kStructure);
      return;
    case State::kJsonValue:
      if (in_literal_) {
        if (escaped_) {
          escaped_ = false;
        } else if (c == '\\') {
          escaped_ = true;
        } else if (c == '"') {
          in_literal_ = false;
        }
      } else if (c == '"') {
        in_literal_ = true;
      } else if (r.ends_with(kParamClose)) {
        enter(State::kStructure);
      }
      return;
    case State::kClosed:
      return;
  }
}

bool DsmlGuard::structural() const {
  switch (state_) {
    case State::kStructure:
      return true;
    case State::kStringValue:
      return partial_suffix(recent_, kParamClose) >= 2;
    case State::kJsonValue:
      return !in_literal_;
    default:
      return false;
  }
}

}  // namespace magnetar::server
