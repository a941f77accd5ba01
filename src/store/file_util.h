// POSIX file helpers of the prefix store: RAII descriptors, full writes/reads, temporary files
// published by rename, directory listing and fsync. Errors name the file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ckv/status.h"

namespace ckv::store_internal {

// ENOSPC / EDQUOT / EFBIG -> NoSpace, anything else -> IOError; "what path: strerror".
Status ErrnoStatus(const std::string& what, const std::string& path, int err);

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { Reset(); }
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.Release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) {
      Reset();
      fd_ = o.Release();
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int Release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void Reset();

 private:
  int fd_ = -1;
};

// Called before each write or fsync with the file's path; non-zero = that errno (tests).
using FaultHook = std::function<int(const std::string& path)>;

// A file written under `final_path + ".tmp"` and published by Publish() (fsync if `sync`, close,
// rename). Destroyed unpublished, it removes the temporary file.
class TmpFile {
 public:
  TmpFile(std::string final_path, bool sync, const FaultHook* fault);
  ~TmpFile();
  TmpFile(const TmpFile&) = delete;
  TmpFile& operator=(const TmpFile&) = delete;

  Status Create();
  Status Write(const void* data, size_t n);
  Status Publish();
  const std::string& final_path() const { return final_path_; }
  uint64_t bytes_written() const { return written_; }

 private:
  std::string final_path_;
  std::string tmp_path_;
  bool sync_;
  const FaultHook* fault_;
  UniqueFd fd_;
  uint64_t written_ = 0;
  bool created_ = false;
  bool published_ = false;
};

// Whole file written under a temporary name and renamed into place (no directory fsync).
Status WriteFileAtomic(const std::string& path, const void* data, size_t n, bool sync,
                       const FaultHook* fault);
// fsync of a directory (makes renames / unlinks in it durable).
Status SyncDir(const std::string& dir);
// Exactly n bytes at offset; a short read (end of file) is Corruption "truncated".
Status PReadFull(int fd, void* buf, size_t n, uint64_t offset, const std::string& path);
Result<std::string> ReadWholeFile(const std::string& path);
// Names of the entries of `dir` (no "." / ".."), unsorted.
Result<std::vector<std::string>> ListDir(const std::string& dir);
Status MakeDir(const std::string& dir);
// The directory and any missing parents.
Status MakeDirs(const std::string& dir);

int64_t NowUnixMs();
// 16 random hex digits (ids of prefixes and segments).
std::string RandomHexId();
bool EndsWith(const std::string& s, const std::string& suffix);

}  // namespace ckv::store_internal
