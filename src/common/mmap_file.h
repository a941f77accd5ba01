// Read-only memory mapping of a whole file (RAII).
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "ckv/status.h"

namespace ckv {

class MmapFile {
 public:
  static Result<std::shared_ptr<MmapFile>> Open(const std::string& path);
  ~MmapFile();
  MmapFile(const MmapFile&) = delete;
  MmapFile& operator=(const MmapFile&) = delete;

  const unsigned char* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MmapFile(std::string path, const unsigned char* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}
  std::string path_;
  const unsigned char* data_;
  size_t size_;
};

}  // namespace ckv
