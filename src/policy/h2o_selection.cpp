#include "policy/h2o_selection.h"

#include <algorithm>
#include <cmath>

namespace ckv {

std::vector<float> TokenAttentionMass(const float* q, int n_q, const int32_t* q_pos,
                                      std::span<const KVSpan> prefix_keys,
                                      const KVSpan& suffix_keys, const AttentionShape& shape) {
  // The same probability-only kernel ContiguousKV scores chunks with (no values, no output):
  // every system pays the same price per key scored.
  std::vector<KVSpan> spans;
  spans.reserve(prefix_keys.size() + 1);
  int64_t prefix_tokens = 0;
  for (const KVSpan& s : prefix_keys) {
    spans.push_back({s.k, nullptr, s.n_tokens, s.pos_begin});
    prefix_tokens += s.n_tokens;
  }
  spans.push_back({suffix_keys.k, nullptr, suffix_keys.n_tokens, suffix_keys.pos_begin});
  std::vector<float> mass(prefix_tokens + suffix_keys.n_tokens, 0.f);
  AttentionMass(q, n_q, q_pos, spans, shape, mass.data());
  mass.resize(prefix_tokens);
  return mass;
}

int64_t TokenBudget(double ratio, int64_t n) {
  if (n <= 0) return 0;
  const auto k = static_cast<int64_t>(std::ceil(ratio * static_cast<double>(n) - 1e-9));
  return std::clamp<int64_t>(k, 1, n);
}

std::vector<int64_t> TopKTokens(std::span<const float> scores, int64_t k) {
  const auto n = static_cast<int64_t>(scores.size());
  std::vector<int64_t> idx(n);
  for (int64_t i = 0; i < n; ++i) idx[i] = i;
  if (k < n) {
    const auto before = [&](int64_t a, int64_t b) {
      return scores[a] != scores[b] ? scores[a] > scores[b] : a < b;
    };
    std::nth_element(idx.begin(), idx.begin() + std::max<int64_t>(k, 0), idx.end(), before);
    idx.resize(std::max<int64_t>(k, 0));
    std::sort(idx.begin(), idx.end());
  }
  return idx;
}

std::vector<int64_t> ChunksOfTokens(std::span<const std::vector<int64_t>> token_sets,
                                    int chunk_tokens) {
  std::vector<int64_t> chunks;
  for (const auto& set : token_sets) {
    for (int64_t t : set) chunks.push_back(t / chunk_tokens);
  }
  std::sort(chunks.begin(), chunks.end());
  chunks.erase(std::unique(chunks.begin(), chunks.end()), chunks.end());
  return chunks;
}

}  // namespace ckv
