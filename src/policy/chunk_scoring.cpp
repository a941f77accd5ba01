#include "policy/chunk_scoring.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/vec_math.h"
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
  // The bound sum_c max(q_c min_c, q_c max_c) equals [max(q, 0), min(q, 0)] . [max, min]
  // (max >= min), so a row's bounds for all chunks are a product with one matrix per KV
  // head: computed for blocks of rows that share the head, 64 chunks at a time, with the
  // chunks' [max, min] stored transposed so the innermost loop runs over chunks (vectorized).
  const int hd = shape.head_dim;
  const int kv_heads = shape.num_kv_heads;
  const int group = shape.num_heads / kv_heads;
  const int k2 = 2 * hd;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int64_t m = sm.n_chunks;
  constexpr int kChunksPerTile = 64;
  constexpr int kRowsPerBlock = 8;
  const int64_t mp = (m + kChunksPerTile - 1) / kChunksPerTile * kChunksPerTile;
  std::vector<float> wt(static_cast<size_t>(kv_heads) * k2 * mp, 0.f);  // [g][c][j]
  for (int64_t j = 0; j < m; ++j) {
    for (int g = 0; g < kv_heads; ++g) {
      const size_t src = (static_cast<size_t>(j) * kv_heads + g) * hd;
      float* w = wt.data() + static_cast<size_t>(g) * k2 * mp + j;
      for (int c = 0; c < hd; ++c) {
        w[static_cast<size_t>(c) * mp] = sm.max[src + c];
        w[static_cast<size_t>(hd + c) * mp] = sm.min[src + c];
      }
    }
  }
  std::vector<float> tokens(mp, 0.f);  // real tokens per chunk, as a weight (0 past m)
  for (int64_t j = 0; j < m; ++j) tokens[j] = static_cast<float>(sm.chunk_tokens[j]);
  // Rows (query i, head h) in head-group order; each block's probabilities are summed on their
  // own and the blocks added in order, so the result does not depend on the thread count.
  const int64_t rows_per_head = static_cast<int64_t>(n_q) * group;
  const int64_t blocks_per_head = (rows_per_head + kRowsPerBlock - 1) / kRowsPerBlock;
  const int64_t n_blocks = blocks_per_head * kv_heads;
  std::vector<float> block_scores(static_cast<size_t>(n_blocks) * m, 0.f);
  const bool parallel = n_blocks > 1 && rows_per_head * kv_heads * m * k2 >= (int64_t{1} << 20);
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t b = 0; b < n_blocks; ++b) {
    const int g = static_cast<int>(b / blocks_per_head);
    const int64_t r0 = (b % blocks_per_head) * kRowsPerBlock;
    const int rows = static_cast<int>(std::min<int64_t>(kRowsPerBlock, rows_per_head - r0));
    std::vector<float> x(static_cast<size_t>(kRowsPerBlock) * k2, 0.f);  // absent rows: 0
    for (int r = 0; r < rows; ++r) {
      const int64_t i = (r0 + r) / group;
      const int h = g * group + static_cast<int>((r0 + r) % group);
      const float* qh = q + (static_cast<size_t>(i) * shape.num_heads + h) * hd;
      for (int c = 0; c < hd; ++c) {
        x[static_cast<size_t>(r) * k2 + c] = std::max(qh[c], 0.f) * scale;
        x[static_cast<size_t>(r) * k2 + hd + c] = std::min(qh[c], 0.f) * scale;
      }
    }
    std::vector<float> u(static_cast<size_t>(kRowsPerBlock) * mp);
    const float* wg = wt.data() + static_cast<size_t>(g) * k2 * mp;
    for (int64_t j0 = 0; j0 < mp; j0 += kChunksPerTile) {
      float acc[kRowsPerBlock][kChunksPerTile] = {};
      for (int c = 0; c < k2; ++c) {
        const float* w = wg + static_cast<size_t>(c) * mp + j0;
        for (int r = 0; r < kRowsPerBlock; ++r) {
          const float xr = x[static_cast<size_t>(r) * k2 + c];
          for (int j = 0; j < kChunksPerTile; ++j) acc[r][j] += xr * w[j];
        }
      }
      for (int r = 0; r < kRowsPerBlock; ++r) {
        std::copy(acc[r], acc[r] + kChunksPerTile, u.data() + static_cast<size_t>(r) * mp + j0);
      }
    }
    float* out = block_scores.data() + static_cast<size_t>(b) * m;
    for (int r = 0; r < rows; ++r) {
      float* ur = u.data() + static_cast<size_t>(r) * mp;
      const float umax = *std::max_element(ur, ur + m);
      double sum = 0.0;
#if defined(__AVX512F__)
      // mp is a multiple of 16; the padding's token count is 0, so it adds nothing.
      static_assert(kChunksPerTile % 16 == 0);
      for (int64_t j = 0; j < mp; j += 16) {
        const __m512 e = Exp512(_mm512_sub_ps(_mm512_loadu_ps(ur + j), _mm512_set1_ps(umax)));
        const __m512 p = _mm512_mul_ps(e, _mm512_loadu_ps(tokens.data() + j));
        _mm512_storeu_ps(ur + j, p);
        sum += _mm512_reduce_add_ps(p);
      }
#else
      for (int64_t j = 0; j < m; ++j) {
        ur[j] = std::exp(ur[j] - umax) * tokens[j];
        sum += ur[j];
      }
#endif
      if (sum <= 0.0) continue;
      const float inv = static_cast<float>(1.0 / sum);
      for (int64_t j = 0; j < m; ++j) out[j] += ur[j] * inv;
    }
  }
  std::vector<float> scores(m, 0.f);
  for (int64_t b = 0; b < n_blocks; ++b) {
    const float* bs = block_scores.data() + static_cast<size_t>(b) * m;
    for (int64_t j = 0; j < m; ++j) scores[j] += bs[j];
  }
  return scores;
}

}  // namespace ckv
