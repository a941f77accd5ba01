// Memory-mapped safetensors files (single or sharded with model.safetensors.index.json).
// Tensors stay in their stored dtype; a TensorView points into the mapping.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ckv/status.h"
#include "common/mmap_file.h"
#include "kernels/dtype.h"

namespace ckv {

struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const void* data = nullptr;  // 8-byte alignment not guaranteed; element alignment is
  size_t nbytes = 0;
  std::string file;  // which file it came from (for error messages)

  int64_t numel() const;
};

// All tensors of a model directory. Keeps the mappings alive.
class SafetensorsSet {
 public:
  // Opens `dir/model.safetensors` or, if present, the shards listed in
  // `dir/model.safetensors.index.json`. Validates every header: JSON well-formed, dtypes
  // known, offsets in range and non-overlapping, shape x dtype size == byte size.
  // kResident reads the files into huge-page memory (MmapFile::Mode) instead of mapping them.
  static Result<SafetensorsSet> Open(const std::string& dir,
                                     MmapFile::Mode mode = MmapFile::Mode::kMap);
  // Opens one file.
  static Result<SafetensorsSet> OpenFile(const std::string& path,
                                         MmapFile::Mode mode = MmapFile::Mode::kMap);

  const TensorView* Find(const std::string& name) const;
  // Error naming the tensor (and file) if missing or if dtype/shape differ from `shape`.
  Result<const TensorView*> Require(const std::string& name,
                                    const std::vector<int64_t>& shape) const;
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  // The model directory (or the file's directory for OpenFile), for error messages.
  const std::string& dir() const { return dir_; }

 private:
  // Parses one file's header and adds its tensors; duplicate names are an error.
  Status AddFile(const std::string& path, MmapFile::Mode mode);

  std::string dir_;
  std::vector<std::shared_ptr<MmapFile>> files_;
  // Tensors whose stored offset is not aligned to their element size are copied here so that
  // every TensorView is element-aligned. Inner buffers never move once created.
  std::vector<std::vector<uint64_t>> aligned_copies_;
  std::map<std::string, TensorView> tensors_;
};

// "[a, b, c]" for error messages.
std::string ShapeToString(const std::vector<int64_t>& shape);

// Writes one safetensors file (header space-padded to a multiple of 8) atomically
// (temporary name + rename). `tensors` data pointers must stay valid during the call.
Status WriteSafetensors(const std::string& path, const std::vector<TensorView>& tensors,
                        const std::map<std::string, std::string>& metadata = {});

}  // namespace ckv
