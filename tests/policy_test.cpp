// Chunk selection and the bounded chunk cache's eviction orders.
#include <gtest/gtest.h>

#include "cache/chunk_cache.h"
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

}  // namespace
}  // namespace ckv
