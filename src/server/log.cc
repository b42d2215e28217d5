#include "server/log.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace magnetar::server {
namespace {

std::mutex log_mutex;
std::atomic<bool> quiet{false};

}  // namespace

void set_requests_quiet(bool q) { quiet = q; }
bool requests_quiet() { return quiet; }

void log_line(std::string_view line) {
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()) % 1000;
  std::tm tm{};
  localtime_r(&t, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%H:%M:%S", &tm);
  std::lock_guard lock(log_mutex);
  std::fprintf(stderr, "%s.%03d magnetar serve: %.*s\n", stamp, static_cast<int>(ms.count()),
               static_cast<int>(line.size()), line.data());
  std::fflush(stderr);
}

}  // namespace magnetar::server
