// One line per event on stderr, with a timestamp, never interleaved between threads.
#pragma once

#include <fmt/format.h>

#include <string_view>

namespace magnetar::server {

void log_line(std::string_view line);

template <typename... Args>
void log(fmt::format_string<Args...> format, Args&&... args) {
  log_line(fmt::format(format, std::forward<Args>(args)...));
}

// Silences log_line (tests that start many servers).
void set_log_quiet(bool quiet);

}  // namespace magnetar::server
