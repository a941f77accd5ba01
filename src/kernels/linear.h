// y = x W^T for a weight stored [out, in] in its file dtype (F32 / BF16 / F16).
// Batched inputs go through oneDNN's matmul (brgemm kernels, AVX512-BF16 for bf16
// weights); one or a few rows go through our own memory-bound GEMV, which reads each
// weight byte once and keeps float32 accumulation.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ckv/status.h"
#include "kernels/dtype.h"

namespace ckv {

// oneDNN matmul primitives by shape, shared by every Linear of a model: the same shapes recur
// in every layer, and creating a primitive (JIT code generation) costs milliseconds, so a
// new suffix length would otherwise pay it once per projection per layer.
class MatmulCache;
std::shared_ptr<MatmulCache> NewMatmulCache();

struct LinearOptions {
  // Reorder bf16/f32 weights into oneDNN's blocked layout at load (faster batched GEMM,
  // costs a copy of the weight); otherwise the mapped file is used in place.
  bool pack_weights = false;
  std::shared_ptr<MatmulCache> primitives;  // null: a private cache
};

class Linear {
 public:
  Linear(const Linear&) = delete;
  Linear& operator=(const Linear&) = delete;
  ~Linear();

  // `data` must outlive the Linear unless pack_weights copies it.
  static Result<std::unique_ptr<Linear>> Create(const void* data, DType dtype, int64_t out_features,
                                                int64_t in_features, const LinearOptions& opts);

  // y[m][out] = sum_k x[m][k] * W[out][k], x and y float32, row-major, m >= 1.
  // `x_bf16` (optional) is x already rounded to bf16, shared by Linears reading the same
  // input (q/k/v, gate/up) so it is converted once.
  void Forward(const float* x, int m, float* y, const uint16_t* x_bf16 = nullptr) const;
  // Whether Forward with m rows would use a bf16 copy of x (so callers can share one).
  bool WantsBf16Input(int m) const {
    return dtype_ == DType::kBF16 && (m > kGemvMaxRows || kGemvRoundsBf16Input);
  }

  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }
  DType dtype() const { return dtype_; }

  // Rows at or below this use the GEMV path: each weight is loaded once for all rows (a decode
  // batch of up to 8 sequences reads the weights once), and each row is computed exactly as
  // it would be alone. Beyond, oneDNN's GEMM (activations rounded to bf16 for bf16 weights).
  static constexpr int kGemvMaxRows = 8;
  // Whether the GEMV path rounds x to bf16 for bf16 weights: it does where the CPU has
  // AVX512-BF16 dot products (half the multiply-adds of a decode batch; linear.cpp).
#if defined(__AVX512BF16__)
  static constexpr bool kGemvRoundsBf16Input = true;
#else
  static constexpr bool kGemvRoundsBf16Input = false;
#endif

 private:
  struct Impl;
  Linear(std::unique_ptr<Impl> impl, const void* data, DType dtype, int64_t out, int64_t in);
  void ForwardGemv(const float* x, int m, float* y, const uint16_t* x_bf16) const;

  std::unique_ptr<Impl> impl_;
  const void* data_;
  DType dtype_;
  int64_t out_;
  int64_t in_;
};

}  // namespace ckv
