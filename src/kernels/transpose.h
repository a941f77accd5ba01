// 16 x 16 transpose of 32-bit elements in AVX-512 registers.
#pragma once

#include "kernels/intrinsics.h"

namespace ckv {

#if defined(__AVX512F__)
// On return r[p] holds element p of every input row: lane j of r[p] = lane p of the input
// r[j]. Four rounds of two-input shuffles (64 instructions): element pairs, then pairs of
// pairs, then 128-bit lanes twice.
inline void Transpose16x16Epi32(__m512i (&r)[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  // Within each 128-bit lane, r[4a + b] now holds element (4 * lane + b) of rows 4a..4a+3.
  for (int a = 0; a < 16; a += 8) {
    for (int b = 0; b < 4; ++b) {
      t[a + b] = _mm512_shuffle_i32x4(r[a + b], r[a + 4 + b], 0x88);
      t[a + 4 + b] = _mm512_shuffle_i32x4(r[a + b], r[a + 4 + b], 0xdd);
    }
  }
  for (int b = 0; b < 8; ++b) {
    r[b] = _mm512_shuffle_i32x4(t[b], t[8 + b], 0x88);
    r[8 + b] = _mm512_shuffle_i32x4(t[b], t[8 + b], 0xdd);
  }
}
#endif

}  // namespace ckv
