#include "engine/stop_matcher.h"

#include <algorithm>
#include <utility>

#include "tokenizer/utf8.h"

namespace magnetar::engine {

StopMatcher::StopMatcher(std::vector<std::string> stop_strings) : stops_(std::move(stop_strings)) {}

StopMatcher::Output StopMatcher::feed(std::string_view piece) {
  Output out;
  if (stopped_) return out;
  pending_.append(piece);

  // Everything before pending_ was emitted only after being checked to hold no match start, so a
  // match can only begin inside pending_.
  size_t match_pos = std::string::npos;
  for (size_t i = 0; i < stops_.size(); ++i) {
    if (stops_[i].empty()) continue;
    const size_t pos = pending_.find(stops_[i]);
    if (pos < match_pos) {
      match_pos = pos;
      out.stop = i;
    }
  }
  if (out.stop.has_value()) {
    stopped_ = true;
    out.text = pending_.substr(0, match_pos);
    pending_.clear();
    return out;
  }

  size_t emit = pending_.size() - stop_prefix_tail();
  emit -= tokenizer::incomplete_suffix_length(std::string_view(pending_).substr(0, emit));
  out.text = pending_.substr(0, emit);
  pending_.erase(0, emit);
  return out;
}

std::string StopMatcher::flush() {
  std::string rest;
  if (!stopped_) rest.swap(pending_);
  return rest;
}

size_t StopMatcher::stop_prefix_tail() const {
  size_t longest = 0;
  const std::string_view text(pending_);
  for (const std::string& stop : stops_) {
    if (stop.empty()) continue;
    // Only tails shorter than the stop string matter: a full match was already searched for.
    const size_t max_len = std::min(stop.size() - 1, text.size());
    for (size_t len = max_len; len > longest; --len) {
      if (text.substr(text.size() - len) == std::string_view(stop).substr(0, len)) {
        longest = len;
        break;
      }
    }
  }
  return longest;
}

}  // namespace magnetar::engine
