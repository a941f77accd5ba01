// Chunk selection and the bounded chunk cache's eviction orders.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "cache/chunk_cache.h"
#include "policy/chunk_scoring.h"
#include "policy/chunk_selection.h"

namespace ckv {
namespace {

TEST(ChunkSelection, TopByScorePlusForcedOnTop) {
  // 20 chunks; chunk j scores j, except a few standouts.
  std::vector<float> scores(20);
  for (int j = 0; j < 20; ++j) scores[j] = static_cast<float>(j % 5);
  scores[7] = 100.f;
  scores[3] = 50.f;
  SelectionBudget b;
  b.ratio = 0.10;  // ceil(2) = 2 by score
  const auto sel = SelectChunks(scores, /*last_chunk_tokens=*/16, 16, b);
  EXPECT_EQ(sel, (std::vector<int64_t>{0, 3, 7, 19}));
}

TEST(ChunkSelection, ForcedChunksAlwaysPresentAndPartialLastKeepsPrevious) {
  std::vector<float> scores(10, 1.0f);
  scores[0] = -5.f;
  scores[9] = -5.f;
  scores[8] = -5.f;
  SelectionBudget b;
  b.ratio = 0.05;
  // Last chunk holds 3 of 16 tokens: chunk 8 is forced too.
  auto sel = SelectChunks(scores, 3, 16, b);
  EXPECT_TRUE(std::find(sel.begin(), sel.end(), 0) != sel.end());
  EXPECT_TRUE(std::find(sel.begin(), sel.end(), 8) != sel.end());
  EXPECT_TRUE(std::find(sel.begin(), sel.end(), 9) != sel.end());
  EXPECT_EQ(sel.size(), 4u);  // 3 forced + ceil(0.5) = 1 by score
  EXPECT_TRUE(std::is_sorted(sel.begin(), sel.end()));
  // Full last chunk: only it.
  EXPECT_EQ(ForcedChunks(10, 16, 16, b), (std::vector<int64_t>{0, 9}));
  EXPECT_EQ(ForcedChunks(1, 5, 16, b), (std::vector<int64_t>{0}));
}

TEST(ChunkSelection, BudgetOneSelectsAllAndTiesPreferEarlier) {
  std::vector<float> scores(7, 2.0f);
  SelectionBudget b;
  b.ratio = 1.0;
  EXPECT_EQ(SelectChunks(scores, 16, 16, b).size(), 7u);
  b.ratio = 0.3;  // ceil(2.1) = 3
  b.force_first = b.force_last = false;
  EXPECT_EQ(SelectChunks(scores, 16, 16, b), (std::vector<int64_t>{0, 1, 2}));
}

// The coverage rule: the fewest top chunks (after the forced ones) that leave at most the
// given share of the total attention mass unselected; the count follows the distribution.
TEST(ChunkSelection, CoverageTakesTheFewestTopChunksLeavingTheAllowedMass) {
  // 10 chunks, forced 0 and 9 (mass 1 each); the rest 20, 10, 5, 2, 1, 1, 0, 0 in a shuffle.
  std::vector<float> scores = {1, 5, 20, 0, 1, 10, 2, 0, 1, 1};
  SelectionBudget b;
  b.ratio = 0.1;  // ignored by the coverage rule
  b.max_uncovered_mass = 0.1;
  // Total mass 100 (the rest went to the suffix): at most 10 may stay out. Unselected after
  // the forced chunks: 39; take 20 (19 left), then 10 (9 left <= 10).
  EXPECT_EQ(SelectChunks(scores, 16, 16, b, 100.0), (std::vector<int64_t>{0, 2, 5, 9}));
  // A tighter bound takes more: 5 (4 left), 2 (2 left) for <= 2.
  b.max_uncovered_mass = 0.02;
  EXPECT_EQ(SelectChunks(scores, 16, 16, b, 100.0), (std::vector<int64_t>{0, 1, 2, 5, 6, 9}));
  // A layer that looks mostly at the suffix (total 1000) leaves all 39 out at 10%.
  b.max_uncovered_mass = 0.1;
  EXPECT_EQ(SelectChunks(scores, 16, 16, b, 1000.0), (std::vector<int64_t>{0, 9}));
  // Nothing may stay out: every chunk with mass; ties at 0 are left out only when allowed.
  b.max_uncovered_mass = 0.0;
  EXPECT_EQ(SelectChunks(scores, 16, 16, b, 100.0), (std::vector<int64_t>{0, 1, 2, 4, 5, 6, 8, 9}));
  b.ratio = 1.0;  // a budget of 1 still selects everything
  EXPECT_EQ(SelectChunks(scores, 16, 16, b, 100.0).size(), 10u);
}

TEST(ChunkSelection, ChunkSumsHandlePartialLastChunk) {
  std::vector<float> tok = {1, 1, 1, 2, 2, 2, 5};
  EXPECT_EQ(ChunkSums(tok, 3), (std::vector<float>{3, 6, 5}));
}

ChunkCache::Data Bytes(size_t n) {
  return std::make_shared<const std::vector<unsigned char>>(n, 7);
}

TEST(ChunkCache, AttentionGuidedEvictsLowestImportanceTimesFrequency) {
  ChunkCache cache(400, CacheEviction::kAttentionGuided);
  const ChunkKey a{1, 0, 0}, b{1, 0, 1}, c{1, 0, 2}, d{1, 0, 3};
  ASSERT_TRUE(cache.Insert(a, Bytes(100)));
  ASSERT_TRUE(cache.Insert(b, Bytes(100)));
  ASSERT_TRUE(cache.Insert(c, Bytes(100)));
  cache.Feedback(a, 0.5, 0);  // S = 0.5 x 1
  cache.Feedback(b, 0.1, 0);  // S = 0.1 x 1
  cache.Feedback(c, 0.2, 0);
  ASSERT_NE(cache.Lookup(c), nullptr);  // F = 2 -> S = 0.4
  ASSERT_NE(cache.Lookup(b), nullptr);  // F = 2 -> S = 0.2
  ASSERT_NE(cache.Lookup(b), nullptr);  // F = 3 -> S = 0.3
  EXPECT_EQ(cache.EvictionOrder(), (std::vector<ChunkKey>{b, c, a}));
  ASSERT_TRUE(cache.Insert(d, Bytes(200)));  // needs 100 more bytes: evicts b only
  EXPECT_EQ(cache.Lookup(b), nullptr);
  EXPECT_NE(cache.Lookup(a), nullptr);
  EXPECT_NE(cache.Lookup(c), nullptr);
  EXPECT_LE(cache.bytes(), cache.capacity());
  const CacheStats st = cache.stats();
  EXPECT_EQ(st.evictions, 1);
  EXPECT_EQ(st.misses, 1);
}

TEST(ChunkCache, LruEvictsLeastRecentlyUsed) {
  ChunkCache cache(300, CacheEviction::kLru);
  const ChunkKey a{1, 0, 0}, b{1, 0, 1}, c{1, 0, 2}, d{2, 1, 0};
  cache.Insert(a, Bytes(100));
  cache.Insert(b, Bytes(100));
  cache.Insert(c, Bytes(100));
  cache.Feedback(b, 1e9, 1.0);  // LRU ignores importance
  ASSERT_NE(cache.Lookup(a), nullptr);
  cache.Insert(d, Bytes(100));
  EXPECT_EQ(cache.Lookup(b), nullptr);
  EXPECT_NE(cache.Lookup(a), nullptr);
}

TEST(ChunkCache, ImpressScoreIsFrequencyTimesImportantFraction) {
  ChunkCache cache(1000, CacheEviction::kImpressScore);
  const ChunkKey a{1, 0, 0}, b{1, 0, 1};
  cache.Insert(a, Bytes(10));
  cache.Insert(b, Bytes(10));
  cache.Feedback(a, 0, 0.9);
  cache.Feedback(b, 0, 0.2);
  cache.Lookup(b);
  cache.Lookup(b);  // F = 3, frac 0.2 -> 0.6 < 0.9
  EXPECT_EQ(cache.EvictionOrder().front(), b);
}

TEST(ChunkCache, NeverExceedsCapacityAndRefusesOversized) {
  ChunkCache cache(1000, CacheEviction::kAttentionGuided);
  EXPECT_FALSE(cache.Insert({9, 9, 9}, Bytes(1001)));
  for (int i = 0; i < 100; ++i) {
    cache.Insert({1, 0, i}, Bytes(37 + i % 50));
    cache.Feedback({1, 0, i}, (i * 7919) % 13, 0);
    EXPECT_LE(cache.bytes(), 1000);
  }
}

// Keys of 4 chunks x 8 tokens, 1 KV head, head_dim 16; chunk 2 holds keys aligned with q.
struct ScoringFixture {
  static constexpr int kHd = 16, kChunk = 8, kChunks = 4;
  std::vector<float> keys = std::vector<float>(kChunk * kChunks * kHd);
  std::vector<float> q = std::vector<float>(2 * kHd);  // 2 query heads sharing the KV head
  ScoringFixture() {
    std::mt19937 rng(3);
    std::normal_distribution<float> nd(0.f, 0.3f);
    for (auto& k : keys) k = nd(rng);
    for (int c = 0; c < kHd; ++c) q[c] = q[kHd + c] = (c % 2 ? 1.f : -1.f);
    for (int t = 2 * kChunk; t < 3 * kChunk; ++t) {
      for (int c = 0; c < kHd; ++c) keys[t * kHd + c] += 0.8f * q[c];
    }
  }
};

TEST(ChunkScoring, AttentionScoresFindTheAlignedChunkAndSumToOne) {
  ScoringFixture f;
  AttentionShape sh{2, 1, ScoringFixture::kHd, DType::kF32};
  std::vector<KVSpan> chunks;
  for (int j = 0; j < ScoringFixture::kChunks; ++j) {
    chunks.push_back({f.keys.data() + j * ScoringFixture::kChunk * ScoringFixture::kHd, nullptr,
                      ScoringFixture::kChunk, j * ScoringFixture::kChunk});
  }
  std::vector<float> suffix_k(ScoringFixture::kHd, 0.f);
  const KVSpan suffix{suffix_k.data(), nullptr, 1, 32};
  const int32_t qpos[1] = {32};
  const auto scores = ScoreChunksByAttention(f.q.data(), 1, qpos, chunks, suffix, sh);
  ASSERT_EQ(scores.size(), 4u);
  EXPECT_EQ(std::max_element(scores.begin(), scores.end()) - scores.begin(), 2);
  float total = 0;
  for (float s : scores) total += s;
  EXPECT_GT(total, 0.f);
  EXPECT_LT(total, 2.0f + 1e-4f);  // 2 heads x 1 query, minus the suffix key's share
}

TEST(ChunkScoring, SummaryBoundDominatesEveryKeyAndRanksLikeAttention) {
  ScoringFixture f;
  const int hd = ScoringFixture::kHd;
  std::vector<float> mn(ScoringFixture::kChunks * hd, 1e30f),
      mx(ScoringFixture::kChunks * hd, -1e30f);
  for (int t = 0; t < ScoringFixture::kChunk * ScoringFixture::kChunks; ++t) {
    const int j = t / ScoringFixture::kChunk;
    for (int c = 0; c < hd; ++c) {
      mn[j * hd + c] = std::min(mn[j * hd + c], f.keys[t * hd + c]);
      mx[j * hd + c] = std::max(mx[j * hd + c], f.keys[t * hd + c]);
    }
  }
  // The Quest bound is >= every q.k in the chunk.
  for (int t = 0; t < ScoringFixture::kChunk * ScoringFixture::kChunks; ++t) {
    const int j = t / ScoringFixture::kChunk;
    float dot = 0, bound = 0;
    for (int c = 0; c < hd; ++c) {
      dot += f.q[c] * f.keys[t * hd + c];
      bound += std::max(f.q[c] * mn[j * hd + c], f.q[c] * mx[j * hd + c]);
    }
    EXPECT_GE(bound + 1e-5f, dot);
  }
  std::vector<int32_t> tokens(ScoringFixture::kChunks, ScoringFixture::kChunk);
  KeySummaries sm{mn.data(), mx.data(), ScoringFixture::kChunks, tokens};
  AttentionShape sh{2, 1, hd, DType::kF32};
  const auto scores = ScoreChunksBySummaries(f.q.data(), 1, sm, sh);
  EXPECT_EQ(std::max_element(scores.begin(), scores.end()) - scores.begin(), 2);
  float total = 0;
  for (float s : scores) total += s;
  EXPECT_NEAR(total, 2.0f, 1e-4f);  // a probability per query row (2 heads)
}

// The summary scorer (a blocked product over [max(q,0), min(q,0)] . [max, min]) against the
// bound written out per channel, in double, on a GQA shape whose rows and chunks do not fill
// the kernel's blocks (14 heads over 2 KV heads, 5 queries, 100 chunks with a short last one).
TEST(ChunkScoring, SummaryScoresMatchADirectReference) {
  const int n_q = 5, heads = 14, kv_heads = 2, hd = 64, group = heads / kv_heads;
  const int64_t m = 100;
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> q(static_cast<size_t>(n_q) * heads * hd), mn(m * kv_heads * hd), mx(mn.size());
  for (auto& v : q) v = 2.f * nd(rng);
  for (size_t i = 0; i < mn.size(); ++i) {
    const float a = nd(rng), b = nd(rng);
    mn[i] = std::min(a, b);
    mx[i] = std::max(a, b);
  }
  std::vector<int32_t> tokens(m, 16);
  tokens[m - 1] = 5;
  const auto scores =
      ScoreChunksBySummaries(q.data(), n_q, KeySummaries{mn.data(), mx.data(), m, tokens},
                             AttentionShape{heads, kv_heads, hd, DType::kF32});
  std::vector<double> ref(m, 0.0);
  for (int i = 0; i < n_q; ++i) {
    for (int h = 0; h < heads; ++h) {
      const int g = h / group;
      const float* qh = q.data() + (static_cast<size_t>(i) * heads + h) * hd;
      std::vector<double> u(m);
      double umax = -1e300;
      for (int64_t j = 0; j < m; ++j) {
        double acc = 0;
        for (int c = 0; c < hd; ++c) {
          const size_t k = (static_cast<size_t>(j) * kv_heads + g) * hd + c;
          acc += std::max(double(qh[c]) * mn[k], double(qh[c]) * mx[k]);
        }
        u[j] = acc / std::sqrt(double(hd));
        umax = std::max(umax, u[j]);
      }
      double sum = 0;
      for (int64_t j = 0; j < m; ++j) sum += (u[j] = std::exp(u[j] - umax) * tokens[j]);
      for (int64_t j = 0; j < m; ++j) ref[j] += u[j] / sum;
    }
  }
  ASSERT_EQ(scores.size(), static_cast<size_t>(m));
  double total = 0;
  for (int64_t j = 0; j < m; ++j) {
    EXPECT_NEAR(scores[j], ref[j], 1e-4 * std::max(1.0, ref[j])) << "chunk " << j;
    total += scores[j];
  }
  EXPECT_NEAR(total, n_q * heads, 1e-3);
}

}  // namespace
}  // namespace ckv
