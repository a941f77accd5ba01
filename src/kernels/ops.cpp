#include "kernels/ops.h"

#include <algorithm>
#include <cmath>

#include "kernels/vec_math.h"

namespace ckv {

void RmsNorm(const float* x, const float* weight, float eps, int rows, int dim, float* y) {
#pragma omp parallel for schedule(static) if (rows > 16)
  for (int r = 0; r < rows; ++r) {
    const float* xr = x + static_cast<size_t>(r) * dim;
    float* yr = y + static_cast<size_t>(r) * dim;
    // Accumulate in double: long rows of large activations lose precision in float.
    double ss = 0.0;
    for (int i = 0; i < dim; ++i) ss += static_cast<double>(xr[i]) * xr[i];
    const float scale = static_cast<float>(1.0 / std::sqrt(ss / dim + eps));
    for (int i = 0; i < dim; ++i) yr[i] = xr[i] * scale * weight[i];
  }
}

RopeTable::RopeTable(int head_dim, float theta) : head_dim_(head_dim), inv_freq_(head_dim / 2) {
  for (int i = 0; i < head_dim / 2; ++i) {
    inv_freq_[i] = static_cast<float>(std::pow(static_cast<double>(theta), -2.0 * i / head_dim));
  }
}

void RopeTable::Apply(float* x, int rows, int stride, int n_heads, const int32_t* positions) const {
  const int half = head_dim_ / 2;
  const float* inv_freq = inv_freq_.data();
#pragma omp parallel if (rows > 16)
  {
    std::vector<float> cs(half), sn(half);
#pragma omp for schedule(static)
    for (int r = 0; r < rows; ++r) {
      for (int i = 0; i < half; ++i) {
        // Same float32 angle computation as the reference implementations (pos * inv_freq).
        const float angle = static_cast<float>(positions[r]) * inv_freq[i];
        cs[i] = std::cos(angle);
        sn[i] = std::sin(angle);
      }
      float* row = x + static_cast<size_t>(r) * stride;
      for (int h = 0; h < n_heads; ++h) {
        float* v = row + static_cast<size_t>(h) * head_dim_;
        for (int i = 0; i < half; ++i) {
          const float a = v[i];
          const float b = v[i + half];
          v[i] = a * cs[i] - b * sn[i];
          v[i + half] = b * cs[i] + a * sn[i];
        }
      }
    }
  }
}

void SiluMul(const float* gate, const float* up, float* out, size_t n) {
  constexpr size_t kBlock = 4096;
  const size_t blocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (blocks > 8)
  for (size_t b = 0; b < blocks; ++b) {
    size_t i = b * kBlock;
    const size_t end = std::min(n, i + kBlock);
#if defined(__AVX512F__)
    const __m512 one = _mm512_set1_ps(1.0f);
    for (; i + 16 <= end; i += 16) {
      const __m512 g = _mm512_loadu_ps(gate + i);
      const __m512 e = Exp512(_mm512_sub_ps(_mm512_setzero_ps(), g));
      const __m512 s = _mm512_div_ps(g, _mm512_add_ps(one, e));
      _mm512_storeu_ps(out + i, _mm512_mul_ps(s, _mm512_loadu_ps(up + i)));
    }
#endif
    for (; i < end; ++i) {
      const float g = gate[i];
      out[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
  }
}

void AddInPlace(float* x, const float* y, size_t n) {
  for (size_t i = 0; i < n; ++i) x[i] += y[i];
}

void AddBiasRows(float* x, const float* bias, int rows, int dim) {
  for (int r = 0; r < rows; ++r) {
    float* xr = x + static_cast<size_t>(r) * dim;
    for (int i = 0; i < dim; ++i) xr[i] += bias[i];
  }
}

}  // namespace ckv
