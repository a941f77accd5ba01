#include "io/direct_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace ckv::io {
namespace {

int OpenRetry(const std::string& path, int flags) {
  int fd;
  do {
    fd = ::open(path.c_str(), flags, 0644);
  } while (fd < 0 && errno == EINTR);
  return fd;
}

Status OpenError(const std::string& path, int err) {
  std::string msg = "cannot open " + path + ": " + std::strerror(err);
  if (err == ENOENT) return Status::NotFound(msg);
  if (err == EACCES || err == EPERM) return Status::IOError(msg + " (permission)");
  return Status::IOError(msg);
}

}  // namespace

Result<DirectFile> DirectFile::OpenForRead(const std::string& path) {
  return Open(path, false);
}

Result<DirectFile> DirectFile::OpenForWrite(const std::string& path) {
  return Open(path, true);
}

Result<DirectFile> DirectFile::Open(const std::string& path, bool write) {
  const int base = O_CLOEXEC | (write ? (O_RDWR | O_CREAT) : O_RDONLY);
  DirectFile f;
  f.path_ = path;
  f.fd_ = OpenRetry(path, base | O_DIRECT);
  f.direct_ = f.fd_ >= 0;
  if (f.fd_ < 0) {
    const int err = errno;
    if (err != EINVAL) return OpenError(path, err);
    // The filesystem does not do direct I/O; use the page cache and say so.
    f.fd_ = OpenRetry(path, base);
    if (f.fd_ < 0) return OpenError(path, errno);
    f.warning_ = "warning: " + path +
                 ": the filesystem refuses O_DIRECT (EINVAL); reading through the page cache, "
                 "so timings include page-cache effects";
  }
  struct stat st;
  if (::fstat(f.fd_, &st) != 0)
    return Status::IOError("cannot stat " + path + ": " + std::strerror(errno));
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
    return Status::InvalidArgument(path + " is not a regular file or block device");
  return f;
}

DirectFile::~DirectFile() {
  if (fd_ >= 0) ::close(fd_);
}

DirectFile::DirectFile(DirectFile&& other) noexcept
    : fd_(other.fd_),
      direct_(other.direct_),
      path_(std::move(other.path_)),
      warning_(std::move(other.warning_)) {
  other.fd_ = -1;
}

DirectFile& DirectFile::operator=(DirectFile&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    direct_ = other.direct_;
    path_ = std::move(other.path_);
    warning_ = std::move(other.warning_);
    other.fd_ = -1;
  }
  return *this;
}

Result<uint64_t> DirectFile::Size() const {
  if (fd_ < 0) return Status::InvalidArgument("size of a closed file " + path_);
  struct stat st;
  if (::fstat(fd_, &st) != 0)
    return Status::IOError("cannot stat " + path_ + ": " + std::strerror(errno));
  if (S_ISBLK(st.st_mode)) {
    const off_t end = ::lseek(fd_, 0, SEEK_END);
    if (end < 0) return Status::IOError("cannot seek " + path_ + ": " + std::strerror(errno));
    return static_cast<uint64_t>(end);
  }
  return static_cast<uint64_t>(st.st_size);
}

Status DirectFile::Sync() const {
  if (fd_ < 0) return Status::InvalidArgument("fsync of a closed file " + path_);
  int rc;
  do {
    rc = ::fsync(fd_);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) return Status::IOError("cannot fsync " + path_ + ": " + std::strerror(errno));
  return Status::OK();
}

Status DirectFile::Close() {
  if (fd_ < 0) return Status::OK();
  const int rc = ::close(fd_);
  fd_ = -1;
  // close() must not be retried on EINTR (Linux frees the descriptor regardless).
  if (rc != 0 && errno != EINTR)
    return Status::IOError("cannot close " + path_ + ": " + std::strerror(errno));
  return Status::OK();
}

}  // namespace ckv::io
