// The machine's streaming read bandwidth with the engine's threads (OpenMP, the runtime the
// kernels use): the bound on decode, which reads every weight once per step. Shared by
// `ckv bench memory` and `ckv bench model` (which measures it beside decode, in the same
// minutes, so their ratio does not depend on what else the machine did in between).
#pragma once

#include <cstddef>
#include <cstdlib>
#include <memory>

#include "ckv/status.h"

namespace ckv::cli {

class ReadBuffer {
 public:
  // A buffer of `bytes` (well above the last-level cache), every page touched by the threads
  // that will read it.
  static Result<ReadBuffer> Create(size_t bytes);

  // One timed pass over the whole buffer: GB/s.
  double ReadPassGbps() const;

 private:
  struct FreeDeleter {
    void operator()(void* p) const { std::free(p); }
  };
  ReadBuffer(std::unique_ptr<float, FreeDeleter> buf, size_t bytes)
      : buf_(std::move(buf)), bytes_(bytes) {}

  std::unique_ptr<float, FreeDeleter> buf_;
  size_t bytes_;
};

}  // namespace ckv::cli
