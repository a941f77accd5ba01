#include "policy/chunk_selection.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace ckv {

std::vector<int64_t> ForcedChunks(int64_t n_chunks, int64_t last_chunk_tokens, int chunk_tokens,
                                  const SelectionBudget& budget) {
  std::vector<int64_t> forced;
  if (n_chunks <= 0) return forced;
  if (budget.force_first) forced.push_back(0);
  if (budget.force_last) {
    if (last_chunk_tokens * 2 < chunk_tokens && n_chunks >= 2) forced.push_back(n_chunks - 2);
    forced.push_back(n_chunks - 1);
  }
  std::sort(forced.begin(), forced.end());
  forced.erase(std::unique(forced.begin(), forced.end()), forced.end());
  return forced;
}

std::vector<int64_t> SelectChunks(std::span<const float> scores, int64_t last_chunk_tokens,
                                  int chunk_tokens, const SelectionBudget& budget,
                                  double total_mass) {
  const int64_t m = static_cast<int64_t>(scores.size());
  std::vector<int64_t> selected;
  if (m == 0) return selected;
  if (budget.ratio >= 1.0) {
    selected.resize(m);
    std::iota(selected.begin(), selected.end(), 0);
    return selected;
  }
  const int64_t keep = std::min<int64_t>(
      m, static_cast<int64_t>(std::ceil(std::max(0.0, budget.ratio) * static_cast<double>(m))));
  std::vector<int64_t> forced = ForcedChunks(m, last_chunk_tokens, chunk_tokens, budget);
  std::vector<char> chosen(m, 0);
  for (int64_t f : forced) chosen[f] = 1;
  // The budget counts chunks chosen by score; forced chunks come on top of it.
  std::vector<int64_t> order;
  order.reserve(m);
  for (int64_t j = 0; j < m; ++j) {
    if (!chosen[j]) order.push_back(j);
  }
  const auto higher = [&](int64_t a, int64_t b) {
    return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
  };
  int64_t by_score = std::min<int64_t>(keep, static_cast<int64_t>(order.size()));
  if (budget.max_uncovered_mass >= 0) {
    std::sort(order.begin(), order.end(), higher);
    double uncovered = 0;
    for (int64_t j : order) uncovered += scores[j];
    const double allowed = budget.max_uncovered_mass * total_mass;
    by_score = 0;
    while (by_score < static_cast<int64_t>(order.size()) && uncovered > allowed) {
      uncovered -= scores[order[by_score++]];
    }
  } else {
    std::partial_sort(order.begin(), order.begin() + by_score, order.end(), higher);
  }
  for (int64_t i = 0; i < by_score; ++i) chosen[order[i]] = 1;
  for (int64_t j = 0; j < m; ++j) {
    if (chosen[j]) selected.push_back(j);
  }
  return selected;
}

std::vector<float> ChunkSums(std::span<const float> token_scores, int chunk_tokens) {
  const int64_t n = static_cast<int64_t>(token_scores.size());
  std::vector<float> sums((n + chunk_tokens - 1) / chunk_tokens, 0.f);
  for (int64_t t = 0; t < n; ++t) sums[t / chunk_tokens] += token_scores[t];
  return sums;
}

}  // namespace ckv
