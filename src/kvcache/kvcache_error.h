// The one exception type of the disk KV cache. Every failure the cache meets (a full disk, an
// unreadable or damaged file, a directory another process owns) becomes a KvCacheError whose
// message names the file and the cause, so a server can log it and carry on without the cache.
#pragma once

#include <stdexcept>
#include <string>

namespace magnetar::kvcache {

class KvCacheError : public std::runtime_error {
 public:
  // `sys_errno`: the errno of the failed system call, 0 when the cause is not one.
  explicit KvCacheError(const std::string& message, int sys_errno = 0)
      : std::runtime_error(message), sys_errno_(sys_errno) {}
  int sys_errno() const { return sys_errno_; }

 private:
  int sys_errno_;
};

}  // namespace magnetar::kvcache
