// Elementwise and normalization kernels of the transformer layer (float32 activations).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/dtype.h"

namespace ckv {

// y[r] = x[r] / rms(x[r]) * weight, for `rows` rows of `dim` (y may alias x).
void RmsNorm(const float* x, const float* weight, float eps, int rows, int dim, float* y);

// Rotary embedding tables: cos/sin of position * theta^(-2i/d) for i < head_dim/2.
class RopeTable {
 public:
  RopeTable(int head_dim, float theta);
  // Rotates (rotate_half convention: pairs (i, i + d/2)) `n_heads` heads of each of `rows`
  // rows of `x` (row stride `stride` floats) at the given positions.
  void Apply(float* x, int rows, int stride, int n_heads, const int32_t* positions) const;

 private:
  int head_dim_;
  std::vector<float> inv_freq_;  // theta^(-2i/d), i < d/2
};

// out[i] = silu(gate[i]) * up[i]
void SiluMul(const float* gate, const float* up, float* out, size_t n);
// x[i] += y[i]
void AddInPlace(float* x, const float* y, size_t n);
// x[r][i] += bias[i]
void AddBiasRows(float* x, const float* bias, int rows, int dim);

}  // namespace ckv
