// Per-chunk key summaries: for each channel of every KV head, the min, max and mean of the
// chunk's keys over its real tokens, stored as bf16 [min row][max row][mean row], kv_dim each.
// min and max of bf16 keys are bf16 values, so they are exact; the mean is rounded to nearest.
// Size: 3 * kv_dim * 2 bytes per (layer, chunk) = 1.5 / c of the chunk's K+V (9.4% at c = 16).
#pragma once

#include <cstddef>
#include <cstdint>

namespace ckv::store_internal {

// k_rows: n_real rows of kv_dim bf16 (n_real >= 1); out: 3 * kv_dim bf16.
void SummarizeChunk(const uint16_t* k_rows, int64_t n_real, int kv_dim, uint16_t* out);
// bf16 -> float for n values.
void DecodeBf16(const uint16_t* in, size_t n, float* out);

}  // namespace ckv::store_internal
