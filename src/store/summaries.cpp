#include "store/summaries.h"

#include <vector>

#include "kernels/dtype.h"

namespace ckv::store_internal {

void SummarizeChunk(const uint16_t* k_rows, int64_t n_real, int kv_dim, uint16_t* out) {
  const size_t n = static_cast<size_t>(kv_dim);
  std::vector<float> mn(n), mx(n);
  std::vector<double> sum(n, 0.0);
  for (int d = 0; d < kv_dim; ++d) mn[size_t(d)] = mx[size_t(d)] = Bf16ToF32(k_rows[d]);
  for (int64_t t = 0; t < n_real; ++t) {
    const uint16_t* row = k_rows + t * kv_dim;
    for (int d = 0; d < kv_dim; ++d) {
      const float x = Bf16ToF32(row[d]);
      if (x < mn[size_t(d)]) mn[size_t(d)] = x;
      if (x > mx[size_t(d)]) mx[size_t(d)] = x;
      sum[size_t(d)] += x;
    }
  }
  for (int d = 0; d < kv_dim; ++d) {
    // Exact: bf16 -> f32 -> bf16 round-trips.
    out[d] = F32ToBf16(mn[size_t(d)]);
    out[kv_dim + d] = F32ToBf16(mx[size_t(d)]);
    out[2 * kv_dim + d] = F32ToBf16(static_cast<float>(sum[size_t(d)] / double(n_real)));
  }
}

void DecodeBf16(const uint16_t* in, size_t n, float* out) {
  for (size_t i = 0; i < n; ++i) out[i] = Bf16ToF32(in[i]);
}

}  // namespace ckv::store_internal
