#include "common/mmap_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
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

namespace {

// The file read into anonymous memory aligned to 2 MiB and advised to use huge pages, then
// made read-only.
Status ReadResident(const std::string& path, int fd, size_t size, void** region_out,
                    size_t* region_size_out, const unsigned char** data_out) {
  constexpr size_t kHuge = size_t{2} << 20;
  const size_t region_size = size + kHuge;  // room to align the start
  void* region = ::mmap(nullptr, region_size, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (region == MAP_FAILED) {
    return Status::IOError("cannot allocate " + std::to_string(size) + " bytes for " + path + ": " +
                           ErrnoText(errno));
  }
  auto* base = reinterpret_cast<unsigned char*>((reinterpret_cast<uintptr_t>(region) + kHuge - 1) /
                                                kHuge * kHuge);
  (void)::madvise(base, size, MADV_HUGEPAGE);  // a hint: without THP, plain pages
  size_t done = 0;
  while (done < size) {
    const size_t want = std::min<size_t>(size - done, size_t{64} << 20);
    const ssize_t got = ::pread(fd, base + done, want, static_cast<off_t>(done));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      const std::string why = got < 0 ? ErrnoText(errno) : "unexpected end of file";
      ::munmap(region, region_size);
      return Status::IOError("cannot read " + path + " at byte " + std::to_string(done) + ": " +
                             why);
    }
    done += static_cast<size_t>(got);
  }
  (void)::mprotect(base, size, PROT_READ);
  *region_out = region;
  *region_size_out = region_size;
  *data_out = base;
  return Status::OK();
}

}  // namespace

Result<std::shared_ptr<MmapFile>> MmapFile::Open(const std::string& path, Mode mode) {
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
    return std::shared_ptr<MmapFile>(new MmapFile(path, nullptr, 0, nullptr, 0));
  }
  if (mode == Mode::kResident) {
    void* region = nullptr;
    size_t region_size = 0;
    const unsigned char* data = nullptr;
    CKV_RETURN_IF_ERROR(ReadResident(path, fd, size, &region, &region_size, &data));
    return std::shared_ptr<MmapFile>(new MmapFile(path, data, size, region, region_size));
  }
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (p == MAP_FAILED) return Status::IOError("cannot mmap " + path + ": " + ErrnoText(errno));
  return std::shared_ptr<MmapFile>(
      new MmapFile(path, static_cast<const unsigned char*>(p), size, p, size));
}

MmapFile::~MmapFile() {
  if (region_ != nullptr) ::munmap(region_, region_size_);
}

}  // namespace ckv
