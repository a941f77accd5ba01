// A file descriptor opened with O_DIRECT, falling back to buffered I/O where the filesystem
// refuses O_DIRECT (open fails with EINVAL: procfs, FUSE without direct_io, tmpfs before
// Linux 6.6, ...). RAII: the descriptor is closed on destruction.
#pragma once

#include <cstdint>
#include <string>

#include "ckv/status.h"

namespace ckv::io {

class DirectFile {
 public:
  DirectFile() = default;
  // Opens an existing regular file (or block device) read-only.
  static Result<DirectFile> OpenForRead(const std::string& path);
  // Opens read-write, creating the file (mode 0644) when missing; never truncates.
  static Result<DirectFile> OpenForWrite(const std::string& path);

  ~DirectFile();
  DirectFile(DirectFile&& other) noexcept;
  DirectFile& operator=(DirectFile&& other) noexcept;
  DirectFile(const DirectFile&) = delete;
  DirectFile& operator=(const DirectFile&) = delete;

  int fd() const { return fd_; }
  bool is_open() const { return fd_ >= 0; }
  const std::string& path() const { return path_; }
  // True when the descriptor bypasses the page cache (O_DIRECT); offsets, lengths and buffer
  // addresses of reads must then be multiples of kIoAlignment.
  bool direct() const { return direct_; }
  // Empty when direct(); otherwise one line saying the page cache is in use and why, for the
  // caller to print once.
  const std::string& warning() const { return warning_; }

  // Current size in bytes (fstat).
  Result<uint64_t> Size() const;
  // fsync.
  Status Sync() const;
  // Closes now and reports a close error (the destructor ignores it).
  Status Close();

 private:
  static Result<DirectFile> Open(const std::string& path, bool write);
  int fd_ = -1;
  bool direct_ = false;
  std::string path_;
  std::string warning_;
};

}  // namespace ckv::io
