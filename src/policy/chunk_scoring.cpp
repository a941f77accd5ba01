#include "policy/chunk_scoring.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "policy/chunk_selection.h"

namespace ckv {

std::vector<float> ScoreChunksByAttention(const float* q, int n_q, const int32_t* q_pos,
                                          std::span<const KVSpan> prefix_keys,
                                          const KVSpan& suffix_keys, const AttentionShape& shape) {
  std::vector<KVSpan> spans(prefix_keys.begin(), prefix_keys.end());
  int64_t prefix_tokens = 0;
  for (const KVSpan& s : prefix_keys) prefix_tokens += s.n_tokens;
  spans.push_back(suffix_keys);
  std::vector<float> mass(prefix_tokens + suffix_keys.n_tokens, 0.f);
  AttentionMass(q, n_q, q_pos, spans, shape, mass.data());
  std::vector<float> scores;
  scores.reserve(prefix_keys.size());
  int64_t t = 0;
  for (const KVSpan& s : prefix_keys) {
    float sum = 0.f;
    for (int64_t i = 0; i < s.n_tokens; ++i) sum += mass[t + i];
    scores.push_back(sum);
    t += s.n_tokens;
  }
  return scores;
}

std::vector<float> ScoreChunksBySummaries(const float* q, int n_q, const KeySummaries& sm,
                                          const AttentionShape& shape) {
  const int hd = shape.head_dim;
  const int group = shape.num_heads / shape.num_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int64_t m = sm.n_chunks;
  std::vector<float> scores(m, 0.f);
  std::vector<float> u(m);
  for (int i = 0; i < n_q; ++i) {
    for (int h = 0; h < shape.num_heads; ++h) {
      const int g = h / group;
      const float* qh = q + (static_cast<size_t>(i) * shape.num_heads + h) * hd;
      float umax = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j < m; ++j) {
        const size_t base = (static_cast<size_t>(j) * shape.num_kv_heads + g) * hd;
        float acc = 0.f;
        for (int c = 0; c < hd; ++c) {
          acc += std::max(qh[c] * sm.min[base + c], qh[c] * sm.max[base + c]);
        }
        u[j] = acc * scale;
        umax = std::max(umax, u[j]);
      }
      double sum = 0.0;
      for (int64_t j = 0; j < m; ++j) {
        u[j] = std::exp(u[j] - umax) * static_cast<float>(sm.chunk_tokens[j]);
        sum += u[j];
      }
      if (sum <= 0.0) continue;
      const float inv = static_cast<float>(1.0 / sum);
      for (int64_t j = 0; j < m; ++j) scores[j] += u[j] * inv;
    }
  }
  return scores;
}

}  // namespace ckv
