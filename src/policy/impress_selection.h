// IMPRESS's identification logic (FAST'25), as pure functions: which probe heads to score,
// the Jaccard agreement of their top-k token sets, the threshold t = j^alpha that decides
// whether their voted set stands for every head, and per-head top-k when it does not.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <utility>
#include <vector>

namespace ckv {

inline constexpr double kImpressAlpha = 0.6;

// The heads whose sets are compared. IMPRESS probes query heads 0..P-1 of an MHA model; under
// GQA the stored probe copy holds their KV heads (deduplicated). With >= 2 distinct probe KV
// heads, each probe is one KV head scored by all query heads of its group (the same unit the
// per-head fallback selects for); with fewer, the probes are query heads 0..P-1 themselves,
// each scored with its own query against its KV head's keys.
struct ProbeHeads {
  bool per_query_head = false;
  std::vector<int> kv_heads;              // per probe: the KV head whose keys it reads
  std::vector<std::vector<int>> q_heads;  // per probe: the query heads whose mass is summed
};
ProbeHeads ChooseProbeHeads(std::span<const int> probe_kv_heads, int num_heads, int num_kv_heads,
                            int probe_query_heads);

// |a ∩ b| / |a ∪ b| of two ascending, duplicate-free sets (1 when both are empty).
double Jaccard(std::span<const int64_t> a, std::span<const int64_t> b);
// Mean Jaccard over all unordered pairs of sets; 1 with fewer than two sets.
double AverageJaccard(std::span<const std::vector<int64_t>> sets);

// t = j^alpha with j = x / (2 - x), x = k / n: j is the expected Jaccard similarity of two
// independent random k-subsets of n tokens, so t asks for agreement well above chance.
double ImpressThreshold(int64_t k, int64_t n, double alpha = kImpressAlpha);

struct ProbeDecision {
  bool use_vote = false;  // average Jaccard > threshold: one voted set for all heads
  double jaccard = 0;
  double threshold = 0;
  std::vector<std::vector<int64_t>> probe_sets;  // top-k per probe head
  std::vector<int64_t> voted;                    // top-k of the summed probe scores
};
// From each probe head's per-token score (all of equal length n), with k tokens kept.
ProbeDecision DecideFromProbes(std::span<const std::vector<float>> probe_scores, int64_t k,
                               double alpha = kImpressAlpha);

// Tokens ranked by the sum of the heads' scores, top k (ties: lower index), ascending.
std::vector<int64_t> VotedSet(std::span<const std::vector<float>> scores, int64_t k);
// Top k per head, each ascending.
std::vector<std::vector<int64_t>> PerHeadTopK(std::span<const std::vector<float>> head_scores,
                                              int64_t k);

// Per-KV-head attention through the one-set-of-spans kernel: the heads' sets (one per KV
// head, all of the same size k) become k compact K/V rows where row r holds, in KV head g's
// slice, head g's r-th selected token. Attending to these rows (at any increasing positions
// before the suffix) gives each head exactly its own tokens, in position order, with its own
// softmax. `row(t)` returns token t's K and V rows ([kv_heads * head_dim] bf16 each);
// k_out and v_out have room for k rows.
using TokenRows = std::function<std::pair<const uint16_t*, const uint16_t*>(int64_t token)>;
void GatherHeadRows(std::span<const std::vector<int64_t>> sets, int head_dim, const TokenRows& row,
                    uint16_t* k_out, uint16_t* v_out);

}  // namespace ckv
