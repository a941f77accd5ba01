#include "common/mmap_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace ckv {
namespace {

std::string ErrnoText(int err) {
  return std::strerror(err);
}

// Closes the descriptor on every return path of Open.
struct FdCloser {
  int fd;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

Result<std::shared_ptr<MmapFile>> MmapFile::Open(const std::string& path) {
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    const int err = errno;
    std::string msg = "cannot open " + path + ": " + ErrnoText(err);
    return err == ENOENT ? Status::NotFound(msg) : Status::IOError(msg);
  }
  FdCloser closer{fd};
  struct stat st;
  if (::fstat(fd, &st) != 0)
    return Status::IOError("cannot stat " + path + ": " + ErrnoText(errno));
  if (!S_ISREG(st.st_mode)) return Status::InvalidArgument(path + " is not a regular file");
  const size_t size = static_cast<size_t>(st.st_size);
  if (size == 0) {
    // mmap rejects length 0; an empty file is still a valid (empty) mapping.
    return std::shared_ptr<MmapFile>(new MmapFile(path, nullptr, 0));
  }
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (p == MAP_FAILED) return Status::IOError("cannot mmap " + path + ": " + ErrnoText(errno));
  return std::shared_ptr<MmapFile>(new MmapFile(path, static_cast<const unsigned char*>(p), size));
}

MmapFile::~MmapFile() {
  if (data_ != nullptr) ::munmap(const_cast<unsigned char*>(data_), size_);
}

}  // namespace ckv
