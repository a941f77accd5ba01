// Grouped-query attention of a block of queries over KV given as spans of consecutive
// positions (the whole cache, or a selection of stored prefix chunks plus the suffix).
#pragma once

#include <cstdint>
#include <span>

#include "kernels/dtype.h"

namespace ckv {

// Keys/values of `n_tokens` consecutive positions starting at `pos_begin`; each token holds
// num_kv_heads * head_dim elements of `dtype` (keys already rotated).
struct KVSpan {
  const void* k = nullptr;
  const void* v = nullptr;
  int64_t n_tokens = 0;
  int64_t pos_begin = 0;
};

struct AttentionShape {
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  DType kv_dtype = DType::kBF16;
};

// Observed attention, for importance scoring: key_mass[t] accumulates, over queries and
// heads, the softmax probability given to the t-th key (keys numbered through the spans in
// order). Must have room for the sum of span lengths.
struct AttentionObserver {
  float* key_mass = nullptr;
};

// out[i] = softmax(q[i] K^T / sqrt(d)) V over the keys with position <= q_pos[i].
// Spans must be ordered by position and must not overlap. The result depends only on the
// sequence of keys, not on how it is cut into spans: a context given as selected chunks
// gives bit-identical output to the same keys given as one span.
// q and out: [n_queries][num_heads * head_dim] float32.
void Attention(const float* q, int n_queries, const int32_t* q_pos, std::span<const KVSpan> spans,
               const AttentionShape& shape, float* out, AttentionObserver* observer = nullptr);

// Only the attention probabilities (no values): key_mass[t] += the probability the queries'
// heads give key t, summed over queries and heads; exactly what Attention's observer reports,
// at about half the cost. Spans' v pointers are ignored.
void AttentionMass(const float* q, int n_queries, const int32_t* q_pos,
                   std::span<const KVSpan> spans, const AttentionShape& shape, float* key_mass);

// The same per query head: head_key_mass[h * total_keys + t] += the probability query head h
// gives key t, summed over queries ([num_heads][total_keys]). Token-level systems that select
// per head, or score a few probe heads, get every head from one pass over the keys.
void AttentionMassPerHead(const float* q, int n_queries, const int32_t* q_pos,
                          std::span<const KVSpan> spans, const AttentionShape& shape,
                          float* head_key_mass);

}  // namespace ckv
