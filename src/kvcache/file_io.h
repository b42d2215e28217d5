// The POSIX file operations the disk cache needs, each turning a failed system call into a
// KvCacheError that names the file and says what happened in words (a full disk, a file size
// limit, an I/O error) rather than only an errno.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>

#include "kvcache/kvcache_error.h"

namespace magnetar::kvcache {

// "the disk is full (ENOSPC)", "the file size limit was reached (EFBIG)", … or strerror.
std::string describe_errno(int err);

// An open file descriptor, closed on destruction.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd();

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_ = -1;
};

// Opens `path` for reading (and writing when `writable`); throws KvCacheError.
UniqueFd open_file(const std::filesystem::path& path, bool writable);
struct FileStat {
  uint64_t bytes = 0;
  int64_t modified = 0;  // Unix seconds
  uint64_t device = 0, inode = 0;
};
FileStat stat_file(int fd, const std::filesystem::path& path);
// Whether `path` still names the file open as `fd` (not deleted or replaced since it was opened).
bool is_same_file(int fd, const std::filesystem::path& path);
// Reads exactly out.size() bytes at `offset`; a short read is an error ("file ended early").
void read_at(int fd, uint64_t offset, std::span<uint8_t> out, const std::filesystem::path& path);
void write_at(int fd, uint64_t offset, std::span<const uint8_t> bytes,
              const std::filesystem::path& path);

// Writes the concatenation of `pieces` to dir/name so that readers, and a restart after a crash
// or power loss, see either no file (or the previous one) or the complete new one: a temp file
// (mode 0600) in the same directory, written, fsync'ed, renamed over dir/name, then the directory
// fsync'ed. On failure the temp file is removed and KvCacheError says which step failed and why,
// leaving dir/name as it was. `temp_name` must be unique among concurrent writers. Returns a
// warning, empty when none: the file is in place but the directory could not be fsync'ed, so the
// rename may not survive a power loss.
[[nodiscard]] std::string write_file_atomically(const std::filesystem::path& dir,
                                                const std::string& name,
                                                const std::string& temp_name,
                                                std::span<const std::span<const uint8_t>> pieces);

// Creates `dir` and missing parents with mode 0700; throws KvCacheError when that fails or `dir`
// is not a directory.
void create_private_directory(const std::filesystem::path& dir);

// An exclusive advisory lock (flock) on dir/<lock file>, held for the object's lifetime, so two
// processes never use one cache directory at once. The kernel drops it when the process dies, so
// there are no stale locks. Throws KvCacheError naming the holder's pid when another process (or
// another lock object in this one) holds it.
class DirectoryLock {
 public:
  static constexpr const char* kFileName = "magnetar-kvcache.lock";
  explicit DirectoryLock(const std::filesystem::path& dir);

 private:
  UniqueFd fd_;
};

}  // namespace magnetar::kvcache
