#include "store/file_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>

namespace ckv::store_internal {

Status ErrnoStatus(const std::string& what, const std::string& path, int err) {
  std::string msg = what + " " + path + ": " + std::strerror(err);
  if (err == ENOSPC || err == EDQUOT || err == EFBIG) return Status::NoSpace(msg);
  return Status::IOError(msg);
}

void UniqueFd::Reset() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

TmpFile::TmpFile(std::string final_path, bool sync, const FaultHook* fault)
    : final_path_(std::move(final_path)),
      tmp_path_(final_path_ + ".tmp"),
      sync_(sync),
      fault_(fault) {}

TmpFile::~TmpFile() {
  fd_.Reset();
  if (created_ && !published_) ::unlink(tmp_path_.c_str());
}

Status TmpFile::Create() {
  const int fd = ::open(tmp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus("cannot create temporary file", tmp_path_, errno);
  fd_ = UniqueFd(fd);
  created_ = true;
  return Status::OK();
}

Status TmpFile::Write(const void* data, size_t n) {
  if (fault_ != nullptr && *fault_) {
    if (const int err = (*fault_)(final_path_); err != 0) {
      return ErrnoStatus("cannot write", final_path_, err);
    }
  }
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd_.get(), p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("cannot write", final_path_, errno);
    }
    p += w;
    n -= static_cast<size_t>(w);
    written_ += static_cast<uint64_t>(w);
  }
  return Status::OK();
}

Status TmpFile::Publish() {
  if (sync_) {
    if (fault_ != nullptr && *fault_) {
      if (const int err = (*fault_)(final_path_); err != 0) {
        return ErrnoStatus("cannot fsync", final_path_, err);
      }
    }
    if (::fdatasync(fd_.get()) != 0) return ErrnoStatus("cannot fsync", final_path_, errno);
  }
  const int fd = fd_.Release();
  if (::close(fd) != 0) return ErrnoStatus("cannot close", final_path_, errno);
  if (::rename(tmp_path_.c_str(), final_path_.c_str()) != 0) {
    return ErrnoStatus("cannot rename temporary file to", final_path_, errno);
  }
  published_ = true;
  return Status::OK();
}

Status WriteFileAtomic(const std::string& path, const void* data, size_t n, bool sync,
                       const FaultHook* fault) {
  TmpFile tmp(path, sync, fault);
  CKV_RETURN_IF_ERROR(tmp.Create());
  CKV_RETURN_IF_ERROR(tmp.Write(data, n));
  return tmp.Publish();
}

Status SyncDir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("cannot open directory", dir, errno);
  UniqueFd guard(fd);
  if (::fsync(fd) != 0) return ErrnoStatus("cannot fsync directory", dir, errno);
  return Status::OK();
}

Status PReadFull(int fd, void* buf, size_t n, uint64_t offset, const std::string& path) {
  char* p = static_cast<char*>(buf);
  while (n > 0) {
    const ssize_t r = ::pread(fd, p, n, static_cast<off_t>(offset));
    if (r < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("cannot read", path, errno);
    }
    if (r == 0) {
      return Status::Corruption("file " + path + " is truncated (no data at offset " +
                                std::to_string(offset) + ")");
    }
    p += r;
    n -= static_cast<size_t>(r);
    offset += static_cast<uint64_t>(r);
  }
  return Status::OK();
}

Result<std::string> ReadWholeFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return Status::NotFound("no file " + path);
    return ErrnoStatus("cannot open", path, errno);
  }
  UniqueFd guard(fd);
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoStatus("cannot stat", path, errno);
  std::string out(static_cast<size_t>(st.st_size), '\0');
  CKV_RETURN_IF_ERROR(PReadFull(fd, out.data(), out.size(), 0, path));
  return out;
}

Result<std::vector<std::string>> ListDir(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return ErrnoStatus("cannot list directory", dir, errno);
  std::vector<std::string> names;
  errno = 0;
  while (const dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
    names.emplace_back(e->d_name);
  }
  const int err = errno;
  ::closedir(d);
  if (err != 0) return ErrnoStatus("cannot list directory", dir, err);
  return names;
}

Status MakeDir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return ErrnoStatus("cannot create directory", dir, errno);
  }
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) return ErrnoStatus("cannot stat", dir, errno);
  if (!S_ISDIR(st.st_mode)) return Status::InvalidArgument(dir + " is not a directory");
  return Status::OK();
}

Status MakeDirs(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return ErrnoStatus("cannot create directory", dir, ec.value());
  return MakeDir(dir);
}

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string RandomHexId() {
  std::random_device rd;
  const uint64_t v = (uint64_t{rd()} << 32) ^ uint64_t { rd() };
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace ckv::store_internal
