#include "kernels/convert.h"

#include <cstring>

#include "kernels/intrinsics.h"

namespace ckv {

void Bf16ToF32Row(const uint16_t* src, float* dst, size_t n) {
  size_t i = 0;
#if defined(__AVX512F__)
  for (; i + 16 <= n; i += 16) {
    __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    __m512i w = _mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16);
    _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(w));
  }
#endif
  for (; i < n; ++i) dst[i] = Bf16ToF32(src[i]);
}

void F32ToBf16Row(const float* src, uint16_t* dst, size_t n) {
  size_t i = 0;
#if defined(__AVX512BF16__) && defined(__AVX512VL__)
  for (; i + 16 <= n; i += 16) {
    __m256bh h = _mm512_cvtneps_pbh(_mm512_loadu_ps(src + i));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), reinterpret_cast<__m256i&>(h));
  }
#endif
  for (; i < n; ++i) dst[i] = F32ToBf16(src[i]);
}

void F16ToF32Row(const uint16_t* src, float* dst, size_t n) {
  size_t i = 0;
#if defined(__AVX512F__)
  for (; i + 16 <= n; i += 16) {
    __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(h));
  }
#endif
  for (; i < n; ++i) dst[i] = F16ToF32(src[i]);
}

void ToF32Row(const void* src, DType type, float* dst, size_t n) {
  switch (type) {
    case DType::kF32:
      std::memcpy(dst, src, n * sizeof(float));
      return;
    case DType::kBF16:
      Bf16ToF32Row(static_cast<const uint16_t*>(src), dst, n);
      return;
    case DType::kF16:
      F16ToF32Row(static_cast<const uint16_t*>(src), dst, n);
      return;
  }
}

}  // namespace ckv
