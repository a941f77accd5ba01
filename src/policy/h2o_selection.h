// Token-level importance (H2O: attention probability mass of the suffix queries on each prefix
// token) and top-k token selection, for the token-granular baselines (AS+H2O, IMPRESS).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kernels/attention.h"

namespace ckv {

// Mass per prefix token: attention probabilities of the suffix queries q[n_q][heads*hd] (RoPE
// applied, at q_pos) over [prefix keys, suffix keys] with the causal mask, summed over query
// tokens and all heads. `prefix_keys` are key-only spans in position order (v ignored).
std::vector<float> TokenAttentionMass(const float* q, int n_q, const int32_t* q_pos,
                                      std::span<const KVSpan> prefix_keys,
                                      const KVSpan& suffix_keys, const AttentionShape& shape);

// k = ceil(ratio * n), clamped to [1, n] (0 when n == 0).
int64_t TokenBudget(double ratio, int64_t n);

// Indices of the k highest scores (ties: lower index first), sorted ascending. k >= size
// selects everything.
std::vector<int64_t> TopKTokens(std::span<const float> scores, int64_t k);

// Chunks (of chunk_tokens tokens) holding any token of any of the sets; ascending, unique.
std::vector<int64_t> ChunksOfTokens(std::span<const std::vector<int64_t>> token_sets,
                                    int chunk_tokens);

}  // namespace ckv
