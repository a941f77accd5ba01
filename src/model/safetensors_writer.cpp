// Writing safetensors files: used by tests and by the random-weight model generator.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "model/safetensors.h"

namespace ckv {
namespace {

Status ErrnoStatus(const std::string& what, const std::string& path, int err) {
  std::string msg = what + " " + path + ": " + std::strerror(err);
  return err == ENOSPC || err == EDQUOT ? Status::NoSpace(msg) : Status::IOError(msg);
}

// Removes the temporary file unless the write was published.
class TmpFile {
 public:
  explicit TmpFile(std::string path) : path_(std::move(path)) {}
  ~TmpFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!published_) ::unlink(path_.c_str());
  }
  TmpFile(const TmpFile&) = delete;
  TmpFile& operator=(const TmpFile&) = delete;

  Status Create(const std::string& final_path) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) return ErrnoStatus("cannot create temporary file for", final_path, errno);
    return Status::OK();
  }

  Status Write(const void* data, size_t n, const std::string& final_path) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      ssize_t w = ::write(fd_, p, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        return ErrnoStatus("cannot write", final_path, errno);
      }
      p += w;
      n -= static_cast<size_t>(w);
    }
    return Status::OK();
  }

  Status SyncCloseRename(const std::string& final_path) {
    if (::fsync(fd_) != 0) return ErrnoStatus("cannot fsync", final_path, errno);
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) return ErrnoStatus("cannot close", final_path, errno);
    if (::rename(path_.c_str(), final_path.c_str()) != 0) {
      return ErrnoStatus("cannot rename temporary file to", final_path, errno);
    }
    published_ = true;
    return Status::OK();
  }

 private:
  std::string path_;
  int fd_ = -1;
  bool published_ = false;
};

// Makes the rename durable.
Status SyncDir(const std::string& file_path) {
  std::string dir = std::filesystem::path(file_path).parent_path().string();
  if (dir.empty()) dir = ".";
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("cannot open directory of", file_path, errno);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return ErrnoStatus("cannot fsync directory of", file_path, err);
  return Status::OK();
}

Status CheckTensor(const std::string& path, const TensorView& t) {
  auto bad = [&](const std::string& what) {
    return Status::InvalidArgument("writing " + path + ": tensor '" + t.name + "': " + what);
  };
  if (t.name.empty() || t.name == "__metadata__") return bad("invalid tensor name");
  uint64_t numel = 1;
  for (int64_t d : t.shape) {
    if (d < 0) return bad("negative dim in shape " + ShapeToString(t.shape));
    if (__builtin_mul_overflow(numel, static_cast<uint64_t>(d), &numel))
      return bad("shape overflows");
  }
  uint64_t nbytes = 0;
  if (__builtin_mul_overflow(numel, DTypeSize(t.dtype), &nbytes) || nbytes != t.nbytes) {
    return bad("nbytes " + std::to_string(t.nbytes) + " does not match shape " +
               ShapeToString(t.shape) + " x " + DTypeName(t.dtype));
  }
  if (t.nbytes > 0 && t.data == nullptr) return bad("no data");
  return Status::OK();
}

}  // namespace

Status WriteSafetensors(const std::string& path, const std::vector<TensorView>& tensors,
                        const std::map<std::string, std::string>& metadata) {
  std::set<std::string> names;
  for (const TensorView& t : tensors) {
    CKV_RETURN_IF_ERROR(CheckTensor(path, t));
    if (!names.insert(t.name).second) {
      return Status::InvalidArgument("writing " + path + ": tensor '" + t.name + "' given twice");
    }
  }
  // Wider dtypes first, then by name (as the reference writer does): with a header padded to
  // 8 bytes every tensor stays element-aligned without gaps in the data buffer.
  std::vector<const TensorView*> order;
  for (const TensorView& t : tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](const TensorView* a, const TensorView* b) {
    if (DTypeSize(a->dtype) != DTypeSize(b->dtype))
      return DTypeSize(a->dtype) > DTypeSize(b->dtype);
    return a->name < b->name;
  });

  std::string header;
  try {
    nlohmann::ordered_json h = nlohmann::ordered_json::object();
    if (!metadata.empty()) h["__metadata__"] = metadata;
    uint64_t offset = 0;
    for (const TensorView* t : order) {
      h[t->name] = {{"dtype", DTypeName(t->dtype)},
                    {"shape", t->shape},
                    {"data_offsets", {offset, offset + t->nbytes}}};
      offset += t->nbytes;
    }
    header = h.dump();
  } catch (const nlohmann::json::exception& e) {
    // Only invalid UTF-8 in names or metadata can make dump throw.
    return Status::InvalidArgument("writing " + path + ": cannot encode header: " + e.what());
  }
  header.append((8 - header.size() % 8) % 8, ' ');

  unsigned char len_bytes[8];
  for (int i = 0; i < 8; ++i)
    len_bytes[i] = static_cast<unsigned char>(uint64_t{header.size()} >> (8 * i));

  TmpFile tmp(path + ".tmp");
  CKV_RETURN_IF_ERROR(tmp.Create(path));
  CKV_RETURN_IF_ERROR(tmp.Write(len_bytes, 8, path));
  CKV_RETURN_IF_ERROR(tmp.Write(header.data(), header.size(), path));
  for (const TensorView* t : order) CKV_RETURN_IF_ERROR(tmp.Write(t->data, t->nbytes, path));
  CKV_RETURN_IF_ERROR(tmp.SyncCloseRename(path));
  return SyncDir(path);
}

}  // namespace ckv
