// Chunk importance for a request: how much attention the suffix's queries give each prefix
// chunk. Two sources: the layer's full prefix keys (exact, as in the paper) or the stored
// per-chunk key summaries (an estimate from a fraction of the bytes).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kernels/attention.h"

namespace ckv {

// Exact scores: attention probabilities of the suffix queries q[n_q][heads*hd] (RoPE applied,
// at positions q_pos) over [prefix keys, suffix keys] with the causal mask, summed over
// query tokens and heads, then over the tokens of each chunk. `prefix_keys` are spans of
// keys only (their v pointers are ignored), in position order, each one chunk of
// `chunk_tokens` tokens (the last may be shorter). Returns one score per prefix chunk.
std::vector<float> ScoreChunksByAttention(const float* q, int n_q, const int32_t* q_pos,
                                          std::span<const KVSpan> prefix_keys,
                                          const KVSpan& suffix_keys, const AttentionShape& shape);

// Per-chunk key summaries of one layer: for chunk j and KV head g, channel c:
// min[(j * kv_heads + g) * hd + c] and max[...] over the chunk's real tokens.
struct KeySummaries {
  const float* min = nullptr;
  const float* max = nullptr;
  int64_t n_chunks = 0;
  std::span<const int32_t> chunk_tokens;  // real tokens per chunk
};

// Estimated scores from summaries: for each query row, the Quest upper bound of q.k over a
// chunk's keys, u = sum_c max(q_c min_c, q_c max_c), turned into a probability over chunks as
// if each of the chunk's tokens had logit u / sqrt(hd); summed over query rows.
std::vector<float> ScoreChunksBySummaries(const float* q, int n_q, const KeySummaries& summaries,
                                          const AttentionShape& shape);

}  // namespace ckv
