// <immintrin.h> for the AVX-512 kernels: they include this, not the intrinsics header, so that
// this is where its text is read first: GCC 12 flags the undefined
// pass-through operand of AVX-512 intrinsics (_mm512_undefined_ps) as uninitialized once they
// are inlined into unrolled loops over rows (GCC bug 105593, fixed in GCC 13). The warning's
// location is the intrinsics header, so only that header's text is exempt.
#pragma once

#if defined(__AVX512F__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif
