// Vectorized exp for the softmax and SiLU hot loops (libm's scalar exp costs more than
// the matmuls around it at 512-token prefill).
#pragma once

#include "kernels/intrinsics.h"

#if defined(__AVX512F__)

namespace ckv {

// exp(x) for 16 floats, relative error ~2e-7 over the float range; exp(-inf) = 0.
// Cody-Waite range reduction x = n ln2 + r, then a degree-6 polynomial for e^r.
inline __m512 Exp512(__m512 x) {
  const __m512 max_x = _mm512_set1_ps(88.3762626647949f);
  const __m512 min_x = _mm512_set1_ps(-103.972076416f);
  x = _mm512_max_ps(_mm512_min_ps(x, max_x), min_x);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500E-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507E-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073E-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894E-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459E-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201E-1f));
  const __m512 r2 = _mm512_mul_ps(r, r);
  p = _mm512_fmadd_ps(p, r2, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  // scalef multiplies by 2^n and handles the underflow to 0 for very negative x.
  return _mm512_scalef_ps(p, n);
}

}  // namespace ckv
#endif
