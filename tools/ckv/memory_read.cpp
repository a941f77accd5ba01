#include "memory_read.h"

#include <immintrin.h>

#include <chrono>
#include <cstring>

#include "cli_common.h"

namespace ckv::cli {
namespace {

// Sums the buffer as floats with vector loads split statically across the threads (as the
// GEMV splits weight rows): every byte read once, nothing written. The sum is returned so the
// loads cannot be optimized away.
float StreamRead(const float* data, size_t n_floats) {
  float total = 0;
  const size_t blocks = n_floats / 64;  // 4 x 16 floats per iteration
#pragma omp parallel for schedule(static) reduction(+ : total)
  for (size_t b = 0; b < blocks; ++b) {
    const float* p = data + b * 64;
#if defined(__AVX512F__)
    __m512 a0 = _mm512_load_ps(p), a1 = _mm512_load_ps(p + 16);
    __m512 a2 = _mm512_load_ps(p + 32), a3 = _mm512_load_ps(p + 48);
    total += _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
#else
    float s = 0;
    for (int i = 0; i < 64; ++i) s += p[i];
    total += s;
#endif
  }
  return total;
}

}  // namespace

Result<ReadBuffer> ReadBuffer::Create(size_t bytes) {
  bytes = bytes / 256 * 256;
  if (bytes == 0) return Status::InvalidArgument("read buffer of 0 bytes");
  std::unique_ptr<float, FreeDeleter> buf(static_cast<float*>(std::aligned_alloc(64, bytes)));
  if (!buf) return Status::Internal("cannot allocate a read buffer of " + std::to_string(bytes));
  const size_t blocks = bytes / 256;
  // First touch from the threads that will read each page.
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < blocks; ++i) std::memset(buf.get() + i * 64, 0, 256);
  ReadBuffer rb(std::move(buf), bytes);
  rb.ReadPassGbps();  // warm-up pass
  return rb;
}

double ReadBuffer::ReadPassGbps() const {
  const auto t0 = std::chrono::steady_clock::now();
  volatile float sink = StreamRead(buf_.get(), bytes_ / sizeof(float));
  (void)sink;
  return bytes_ / SecondsSince(t0) / 1e9;
}

}  // namespace ckv::cli
