#include "policy/impress_selection.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "policy/h2o_selection.h"

namespace ckv {

ProbeHeads ChooseProbeHeads(std::span<const int> probe_kv_heads, int num_heads, int num_kv_heads,
                            int probe_query_heads) {
  ProbeHeads p;
  const int group = num_heads / num_kv_heads;
  std::vector<int> distinct(probe_kv_heads.begin(), probe_kv_heads.end());
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  if (distinct.size() >= 2) {
    for (int g : distinct) {
      p.kv_heads.push_back(g);
      std::vector<int> qs;
      for (int h = g * group; h < (g + 1) * group; ++h) qs.push_back(h);
      p.q_heads.push_back(std::move(qs));
    }
    return p;
  }
  p.per_query_head = true;
  for (int h = 0; h < std::min(probe_query_heads, num_heads); ++h) {
    p.kv_heads.push_back(h / group);
    p.q_heads.push_back({h});
  }
  return p;
}

double Jaccard(std::span<const int64_t> a, std::span<const int64_t> b) {
  if (a.empty() && b.empty()) return 1.0;
  size_t i = 0, j = 0, inter = 0;
  while (i < a.size() && j < b.size()) {
    if (a[i] == b[j]) {
      ++inter;
      ++i;
      ++j;
    } else if (a[i] < b[j]) {
      ++i;
    } else {
      ++j;
    }
  }
  const size_t uni = a.size() + b.size() - inter;
  return static_cast<double>(inter) / static_cast<double>(uni);
}

double AverageJaccard(std::span<const std::vector<int64_t>> sets) {
  if (sets.size() < 2) return 1.0;
  double sum = 0;
  int pairs = 0;
  for (size_t a = 0; a < sets.size(); ++a) {
    for (size_t b = a + 1; b < sets.size(); ++b) {
      sum += Jaccard(sets[a], sets[b]);
      ++pairs;
    }
  }
  return sum / pairs;
}

double ImpressThreshold(int64_t k, int64_t n, double alpha) {
  if (n <= 0) return 1.0;
  const double x = std::clamp(static_cast<double>(k) / static_cast<double>(n), 0.0, 1.0);
  return std::pow(x / (2.0 - x), alpha);
}

std::vector<int64_t> VotedSet(std::span<const std::vector<float>> scores, int64_t k) {
  if (scores.empty()) return {};
  std::vector<float> sum(scores[0].size(), 0.f);
  for (const auto& s : scores) {
    for (size_t i = 0; i < sum.size() && i < s.size(); ++i) sum[i] += s[i];
  }
  return TopKTokens(sum, k);
}

std::vector<std::vector<int64_t>> PerHeadTopK(std::span<const std::vector<float>> head_scores,
                                              int64_t k) {
  std::vector<std::vector<int64_t>> sets;
  sets.reserve(head_scores.size());
  for (const auto& s : head_scores) sets.push_back(TopKTokens(s, k));
  return sets;
}

ProbeDecision DecideFromProbes(std::span<const std::vector<float>> probe_scores, int64_t k,
                               double alpha) {
  ProbeDecision d;
  const int64_t n = probe_scores.empty() ? 0 : static_cast<int64_t>(probe_scores[0].size());
  d.probe_sets = PerHeadTopK(probe_scores, k);
  d.jaccard = AverageJaccard(d.probe_sets);
  d.threshold = ImpressThreshold(std::min(k, n), n, alpha);
  d.use_vote = d.jaccard > d.threshold;
  if (d.use_vote) d.voted = VotedSet(probe_scores, k);
  return d;
}

void GatherHeadRows(std::span<const std::vector<int64_t>> sets, int head_dim, const TokenRows& row,
                    uint16_t* k_out, uint16_t* v_out) {
  const size_t kv_dim = sets.size() * static_cast<size_t>(head_dim);
  for (size_t g = 0; g < sets.size(); ++g) {
    const size_t slice = g * head_dim;
    for (size_t r = 0; r < sets[g].size(); ++r) {
      const auto [k, v] = row(sets[g][r]);
      std::memcpy(k_out + r * kv_dim + slice, k + slice, head_dim * sizeof(uint16_t));
      std::memcpy(v_out + r * kv_dim + slice, v + slice, head_dim * sizeof(uint16_t));
    }
  }
}

}  // namespace ckv
