// One line per event on stderr, with a timestamp, never interleaved between threads.
#pragma once

#include <fmt/format.h>

#include <string_view>

namespace magnetar::server {

void log_line(std::string_view line);

// Startup, shutdown and errors: always written.
template <typename... Args>
void log(fmt::format_string<Args...> format, Args&&... args) {
  log_line(fmt::format(format, std::forward<Args>(args)...));
}

// One line per finished request; silenced by set_requests_quiet(true) (`serve --quiet`).
void set_requests_quiet(bool quiet);
bool requests_quiet();

template <typename... Args>
void log_request(fmt::format_string<Args...> format, Args&&... args) {
  if (!requests_quiet()) log_line(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace magnetar::server
