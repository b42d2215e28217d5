#include "kvcache/file_io.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace magnetar::kvcache {
namespace {

KvCacheError sys_error(const std::string& what, const std::filesystem::path& path, int err) {
  return KvCacheError(what + " " + path.string() + ": " + describe_errno(err), err);
}

}  // namespace

std::string describe_errno(int err) {
  switch (err) {
    case ENOSPC:
      return "the disk is full (ENOSPC)";
    case EDQUOT:
      return "the disk quota is exhausted (EDQUOT)";
    case EFBIG:
      return "the file size limit was reached (EFBIG)";
    case EIO:
      return "input/output error (EIO)";
    case EROFS:
      return "the file system is read-only (EROFS)";
    case EACCES:
    case EPERM:
      return std::string("permission denied (") + (err == EACCES ? "EACCES" : "EPERM") + ")";
    default:
      return std::strerror(err);
  }
}

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.release();
  }
  return *this;
}

UniqueFd::~UniqueFd() {
  if (fd_ >= 0) ::close(fd_);
}

UniqueFd open_file(const std::filesystem::path& path, bool writable) {
  int fd = ::open(path.c_str(), (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) throw sys_error("cannot open", path, errno);
  return UniqueFd(fd);
}

FileStat stat_file(int fd, const std::filesystem::path& path) {
  struct stat st;
  if (::fstat(fd, &st) != 0) throw sys_error("cannot stat", path, errno);
  return {static_cast<uint64_t>(st.st_size), static_cast<int64_t>(st.st_mtime),
          static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)};
}

bool is_same_file(int fd, const std::filesystem::path& path) {
  struct stat open_st, path_st;
  return ::fstat(fd, &open_st) == 0 && ::stat(path.c_str(), &path_st) == 0 &&
         open_st.st_dev == path_st.st_dev && open_st.st_ino == path_st.st_ino;
}

void read_at(int fd, uint64_t offset, std::span<uint8_t> out, const std::filesystem::path& path) {
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::pread(fd, out.data() + done, out.size() - done, offset + done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw sys_error("cannot read", path, errno);
    if (n == 0)
      throw KvCacheError("cannot read " + path.string() + ": the file ended at byte " +
                         std::to_string(offset + done) + " (truncated)");
    done += static_cast<size_t>(n);
  }
}

void write_at(int fd, uint64_t offset, std::span<const uint8_t> bytes,
              const std::filesystem::path& path) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::pwrite(fd, bytes.data() + done, bytes.size() - done, offset + done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw sys_error("cannot write", path, errno);
    done += static_cast<size_t>(n);
  }
}

std::string write_file_atomically(const std::filesystem::path& dir, const std::string& name,
                                  const std::string& temp_name,
                                  std::span<const std::span<const uint8_t>> pieces) {
  const std::filesystem::path temp = dir / temp_name, target = dir / name;
  UniqueFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd) throw sys_error("cannot create", temp, errno);
  try {
    uint64_t offset = 0;
    for (std::span<const uint8_t> piece : pieces) {
      write_at(fd.get(), offset, piece, temp);
      offset += piece.size();
    }
    // The data must be on disk before the rename makes it visible under the final name, or a power
    // loss could leave a complete-looking name over missing data.
    if (::fsync(fd.get()) != 0) throw sys_error("cannot fsync", temp, errno);
    if (::close(fd.release()) != 0) throw sys_error("cannot close", temp, errno);
    if (::rename(temp.c_str(), target.c_str()) != 0)
      throw sys_error("cannot rename into place", target, errno);
  } catch (...) {
    ::unlink(temp.c_str());
    throw;
  }
  // The rename itself is durable only once the directory is.
  UniqueFd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir_fd || ::fsync(dir_fd.get()) != 0)
    return "written, but cannot fsync the directory of " + target.string() + ": " +
           describe_errno(errno);
  return {};
}

void create_private_directory(const std::filesystem::path& dir) {
  std::filesystem::path partial;
  for (const std::filesystem::path& part : dir) {
    partial /= part;
    if (::mkdir(partial.c_str(), 0700) != 0 && errno != EEXIST)
      throw sys_error("cannot create the directory", partial, errno);
  }
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) throw sys_error("cannot stat", dir, errno);
  if (!S_ISDIR(st.st_mode))
    throw KvCacheError("the KV cache path " + dir.string() + " is not a directory");
}

DirectoryLock::DirectoryLock(const std::filesystem::path& dir) {
  const std::filesystem::path path = dir / kFileName;
  fd_ = UniqueFd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd_) throw sys_error("cannot open the lock file", path, errno);
  if (::flock(fd_.get(), LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    if (err != EWOULDBLOCK) throw sys_error("cannot lock", path, err);
    char pid[32] = {};
    ssize_t n = ::pread(fd_.get(), pid, sizeof pid - 1, 0);
    std::string holder = n > 0 ? std::string(pid, static_cast<size_t>(n)) : "unknown";
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    throw KvCacheError("the KV cache directory " + dir.string() +
                           " is in use by another process (pid " + holder +
                           "); one process owns a cache directory at a time",
                       err);
  }
  // Only the lock matters; the pid is for the message another process prints.
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd_.get(), 0) == 0)
    write_at(fd_.get(), 0, std::span(reinterpret_cast<const uint8_t*>(pid.data()), pid.size()),
             path);
}

}  // namespace magnetar::kvcache
