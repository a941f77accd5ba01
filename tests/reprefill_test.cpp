// The Re-Prefill pipeline end to end on the bundled model: stored prefix -> selection ->
// prefetch -> attention, checked against full attention and against itself.
#include "ckv/reprefill.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "ckv/generate.h"
#include "ckv/model.h"
#include "ckv/prefix_store.h"
#include "engine/transformer.h"
#include "test_util.h"

namespace ckv {
namespace {

class ReprefillTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = Model::Load(test::BundledModelDir());
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    model_ = std::move(m).value();
    const std::string text = test::ReadFileOrDie(test::TextDataDir() + "/tinystories.txt");
    auto ids = model_->tokenizer()->Encode(text, true);
    ASSERT_TRUE(ids.ok());
    all_ids_ = *ids;
    store_dir_ = test::MakeTempDir("reprefill");
  }

  std::unique_ptr<PrefixStore> OpenStore() {
    StoreOptions so;
    so.sync = false;
    auto s = PrefixStore::Open(store_dir_, so);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? std::move(s).value() : nullptr;
  }

  // prefix = ids[0, n_prefix), request = ids[0, n_prefix + n_suffix)
  std::vector<int32_t> Ids(int64_t n) const { return {all_ids_.begin(), all_ids_.begin() + n}; }

  // Logits of Forward(prefix) then Forward(suffix) with a bf16 cache: what Re-Prefill at
  // budget 1 must reproduce exactly.
  std::vector<float> TwoStepLogits(int64_t n_prefix, int64_t n) const {
    KVCache kv = model_->NewCache(KVPrecision::kBF16, n);
    std::vector<float> logits;
    const auto ids = Ids(n);
    EXPECT_TRUE(model_->Forward(std::span(ids).first(n_prefix), kv, nullptr).ok());
    EXPECT_TRUE(model_->Forward(std::span(ids).subspan(n_prefix), kv, &logits).ok());
    return logits;
  }

  Result<ReprefillResult> Run(PrefixStore& store, std::span<const int32_t> ids, ReprefillOptions o,
                              StoreLayout layout = StoreLayout::PeriodMajor(16, 8),
                              int64_t cache_bytes = 0, int64_t prefetch_bytes = 64 << 20) {
    ReprefillEngine::Config ec;
    ec.layout = layout;
    ec.cache_bytes = cache_bytes;
    ec.prefetch_bytes = prefetch_bytes;
    auto e = ReprefillEngine::Create(*model_, store, ec);
    if (!e.ok()) return e.status();
    return (*e)->Run(ids, o);
  }

  std::unique_ptr<Model> model_;
  std::vector<int32_t> all_ids_;
  std::string store_dir_;
};

TEST_F(ReprefillTest, StoredKVEqualsTheEngineKVBitForBit) {
  auto store = OpenStore();
  const int64_t n = 173;  // 173 = 10 * 16 + 13: a partial last chunk for every c below
  KVCache kv = model_->NewCache(KVPrecision::kBF16, n);
  ASSERT_TRUE(model_->Forward(Ids(n), kv, nullptr).ok());
  const int kv_dim = model_->config().kv_dim();
  for (auto layout : {StoreLayout::PeriodMajor(16, 8), StoreLayout::PeriodMajor(8, 3),
                      StoreLayout::PeriodMajor(64, 1), StoreLayout::LayerMajor(16),
                      StoreLayout::Impress(64, 3)}) {
    auto info = StorePrefix(*model_, *store, layout, Ids(n));
    ASSERT_TRUE(info.ok()) << info.status().ToString();
    auto h = store->OpenPrefix(info->id);
    ASSERT_TRUE(h.ok());
    std::vector<uint16_t> k(static_cast<size_t>(n) * kv_dim), v(k.size());
    for (int l = 0; l < model_->config().num_layers; ++l) {
      ASSERT_TRUE((*h)->ReadLayer(l, k.data(), v.data()).ok());
      EXPECT_EQ(0, std::memcmp(k.data(), kv.k(l), k.size() * 2))
          << layout.ToString() << " K layer " << l;
      EXPECT_EQ(0, std::memcmp(v.data(), kv.v(l), v.size() * 2))
          << layout.ToString() << " V layer " << l;
    }
  }
}

TEST_F(ReprefillTest, BudgetOneEqualsFullAttentionExactly) {
  auto store = OpenStore();
  const int64_t np = 300, n = 310;
  for (auto layout : {StoreLayout::PeriodMajor(16, 8), StoreLayout::PeriodMajor(16, 2),
                      StoreLayout::LayerMajor(16)}) {
    ASSERT_TRUE(StorePrefix(*model_, *store, layout, Ids(np)).ok());
    ReprefillOptions o;
    o.budget = 1.0;
    for (bool prefetch : {true, false}) {
      o.prefetch = prefetch;
      auto r = Run(*store, Ids(n), o, layout);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      EXPECT_EQ(r->stats.prefix_tokens, np);
      EXPECT_EQ(r->first_logits, TwoStepLogits(np, n)) << layout.ToString();
      EXPECT_DOUBLE_EQ(r->stats.attended_fraction, 1.0);
    }
  }
  // And against one whole-context prefill (the `ckv logits` path): the same up to float
  // rounding of differently batched matmuls.
  KVCache kv = model_->NewCache(KVPrecision::kBF16, n);
  std::vector<float> whole;
  ASSERT_TRUE(model_->Forward(Ids(n), kv, &whole).ok());
  ReprefillOptions o;
  o.budget = 1.0;
  auto r = Run(*store, Ids(n), o, StoreLayout::LayerMajor(16));
  ASSERT_TRUE(r.ok());
  float max_diff = 0;
  for (size_t i = 0; i < whole.size(); ++i)
    max_diff = std::max(max_diff, std::abs(whole[i] - r->first_logits[i]));
  EXPECT_LE(max_diff, 1e-3f);
  EXPECT_EQ(Argmax(whole), Argmax(r->first_logits));
}

TEST_F(ReprefillTest, ForcedChunksAlwaysSelectedAndBudgetRespected) {
  auto store = OpenStore();
  const int64_t np = 405, n = 420;  // last chunk partial (405 = 25 * 16 + 5)
  ASSERT_TRUE(StorePrefix(*model_, *store, StoreLayout::PeriodMajor(16, 2), Ids(np)).ok());
  for (ScoringSource src : {ScoringSource::kFullKeys, ScoringSource::kSummaries}) {
    ReprefillOptions o;
    o.budget = 0.1;
    o.scoring = src;
    auto r = Run(*store, Ids(n), o, StoreLayout::PeriodMajor(16, 2));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    const int64_t m = 26;
    ASSERT_EQ(r->selections.size(), 3u);  // 5 layers, p = 2
    for (const auto& sel : r->selections) {
      EXPECT_EQ(sel.front(), 0);
      EXPECT_EQ(sel.back(), m - 1);
      EXPECT_TRUE(std::find(sel.begin(), sel.end(), m - 2) != sel.end());  // 5-token last chunk
      EXPECT_EQ(static_cast<int64_t>(sel.size()), 3 + 3);  // forced + ceil(0.1 * 26)
    }
    EXPECT_LT(r->stats.attended_fraction, 0.3);
    EXPECT_GT(r->stats.ssd_bytes_read, 0);
  }
}

TEST_F(ReprefillTest, PrefetchAndMispredictionChangeTimingNotResults) {
  auto store = OpenStore();
  const int64_t np = 400, n = 410;
  const auto layout = StoreLayout::PeriodMajor(16, 2);
  ASSERT_TRUE(StorePrefix(*model_, *store, layout, Ids(np)).ok());
  ReprefillOptions o;
  o.budget = 0.25;
  o.random_selection = true;  // different random sets per period: speculation mispredicts
  o.random_seed = 9;
  o.sub_period = 1;
  o.max_tokens = 4;
  o.prefetch = true;
  auto a = Run(*store, Ids(n), o, layout);
  o.prefetch = false;
  auto b = Run(*store, Ids(n), o, layout);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->selections, b->selections);
  EXPECT_EQ(a->first_logits, b->first_logits);
  EXPECT_EQ(a->generated_ids, b->generated_ids);
  EXPECT_GT(a->stats.chunks_prefetched, 0);
  EXPECT_GT(a->stats.chunks_mispredicted, 0);
  EXPECT_EQ(b->stats.chunks_prefetched, 0);
}

TEST_F(ReprefillTest, BoundedPrefetchBufferIsNeverExceededAndResultsHold) {
  auto store = OpenStore();
  const int64_t np = 500, n = 505;
  const auto layout = StoreLayout::PeriodMajor(16, 1);
  ASSERT_TRUE(StorePrefix(*model_, *store, layout, Ids(np)).ok());
  ReprefillOptions o;
  o.budget = 1.0;
  auto big = Run(*store, Ids(n), o, layout, 0, 64 << 20);
  // 64 KiB holds 16 of the 32 units (4 KiB each) a period needs.
  auto tiny = Run(*store, Ids(n), o, layout, 0, 64 << 10);
  ASSERT_TRUE(big.ok() && tiny.ok());
  EXPECT_EQ(big->first_logits, tiny->first_logits);
  EXPECT_EQ(big->stats.buffer_overflows, 0);
  EXPECT_GT(tiny->stats.buffer_overflows, 0);
  EXPECT_LE(tiny->stats.prefetch_peak_bytes, tiny->stats.prefetch_capacity_bytes);
  EXPECT_EQ(tiny->stats.prefetch_capacity_bytes, 64 << 10);
}

// Every period's scoring keys do not fit a small pool (a long prefix at a short period): they
// are read one period ahead within half the pool as earlier periods release theirs, so reads
// do not fall back to the synchronous path and the answers are those of a large pool.
TEST_F(ReprefillTest, ScoringKeysBeyondThePoolAreReadAheadAsItFrees) {
  auto store = OpenStore();
  const int64_t np = 450, n = 460;
  // 29 chunks x 5 periods of 4 KiB key reads: 580 KiB of scoring keys against a 256 KiB pool.
  const auto layout = StoreLayout::PeriodMajor(16, 1);
  ASSERT_TRUE(StorePrefix(*model_, *store, layout, Ids(np)).ok());
  ReprefillOptions o;
  o.budget = 0.25;
  o.max_tokens = 4;
  // No speculative reads: they may fill what the scoring keys leave free (by design: they are
  // skipped, never synchronous, when the pool is full), and this is about the scoring keys.
  o.prefetch = false;
  auto big = Run(*store, Ids(n), o, layout, 0, 64 << 20);
  auto small = Run(*store, Ids(n), o, layout, 0, 256 << 10);
  ASSERT_TRUE(big.ok() && small.ok());
  EXPECT_EQ(small->selections, big->selections);
  EXPECT_EQ(small->first_logits, big->first_logits);
  EXPECT_EQ(small->generated_ids, big->generated_ids);
  EXPECT_EQ(small->stats.scoring_bytes_read, big->stats.scoring_bytes_read);
  // All the keys up front would read 81 of them synchronously. A finished read's buffer goes
  // back to the pool when the I/O thread drops its reference, an instant after the waiter
  // sees it done: under load a read issued in that instant may still find the pool full.
  EXPECT_LT(small->stats.buffer_overflows, 8);
  EXPECT_LE(small->stats.prefetch_peak_bytes, 256 << 10);
}

TEST_F(ReprefillTest, MemoryCacheServesRepeatedRequests) {
  auto store = OpenStore();
  const int64_t np = 300;
  ASSERT_TRUE(StorePrefix(*model_, *store, StoreLayout::PeriodMajor(16, 8), Ids(np)).ok());
  ReprefillEngine::Config ec;
  ec.cache_bytes = 64 << 20;
  auto e = ReprefillEngine::Create(*model_, *store, ec);
  ASSERT_TRUE(e.ok());
  ReprefillOptions o;
  o.budget = 0.5;
  auto first = (*e)->Run(Ids(np + 8), o);
  auto second = (*e)->Run(Ids(np + 8), o);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(first->stats.cache_hits, 0);
  EXPECT_GT(second->stats.cache_hits, 0);
  EXPECT_GT(second->stats.cache_bytes_hit, 0);
  EXPECT_LT(second->stats.ssd_bytes_read - second->stats.scoring_bytes_read,
            first->stats.ssd_bytes_read - first->stats.scoring_bytes_read);
  EXPECT_EQ(first->first_logits, second->first_logits);
}

// A trace that cannot be written costs the trace, not the answer.
TEST_F(ReprefillTest, AnUnwritableTraceKeepsTheAnswer) {
  auto store = OpenStore();
  const int64_t np = 300;
  ASSERT_TRUE(StorePrefix(*model_, *store, StoreLayout::PeriodMajor(16, 8), Ids(np)).ok());
  auto e = ReprefillEngine::Create(*model_, *store, {});
  ASSERT_TRUE(e.ok());
  ReprefillOptions o;
  o.budget = 0.5;
  auto plain = (*e)->Run(Ids(np + 8), o);
  o.trace_path = "/nonexistent-dir/trace.json";
  auto traced = (*e)->Run(Ids(np + 8), o);
  ASSERT_TRUE(plain.ok() && traced.ok()) << traced.status().ToString();
  EXPECT_EQ(traced->first_logits, plain->first_logits);
  EXPECT_NE(traced->stats.note.find("/nonexistent-dir/trace.json"), std::string::npos)
      << traced->stats.note;
}

// One hit or miss per attended read unit, as for every system (ReprefillStats): speculative
// units the next period does not select are neither. Period-major units hold all p layers, so
// a period's selected chunks are its units.
TEST_F(ReprefillTest, OneHitOrMissPerAttendedUnit) {
  auto store = OpenStore();
  const int64_t np = 300;
  ASSERT_TRUE(StorePrefix(*model_, *store, StoreLayout::PeriodMajor(16, 2), Ids(np)).ok());
  ReprefillEngine::Config ec;
  ec.layout = StoreLayout::PeriodMajor(16, 2);
  ec.cache_bytes = 64 << 20;
  auto e = ReprefillEngine::Create(*model_, *store, ec);
  ASSERT_TRUE(e.ok());
  ReprefillOptions o;
  o.budget = 0.2;
  o.sub_period = 1;  // speculate for the next period one layer in
  // Random chunks per period: adjacent periods disagree, so speculation mispredicts.
  o.random_selection = true;
  for (int i = 0; i < 3; ++i) {
    o.random_seed = static_cast<uint64_t>(i);
    auto r = (*e)->Run(Ids(np + 8 + i), o);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    const auto& s = r->stats;
    if (i == 0) {
      EXPECT_GT(s.chunks_mispredicted, 0);
    }
    EXPECT_EQ(s.cache_hits + s.cache_misses, s.chunks_selected) << "request " << i;
    if (i > 0) {
      EXPECT_GT(s.cache_hits, 0);
    }
  }
}

TEST_F(ReprefillTest, AttentionGuidedCacheKeepsTheScoringKeysUnderPressure) {
  auto store = OpenStore();
  const int64_t np = 300;
  ASSERT_TRUE(StorePrefix(*model_, *store, StoreLayout::PeriodMajor(16, 8), Ids(np)).ok());
  ReprefillOptions o;
  o.budget = 0.5;
  auto cold = Run(*store, Ids(np + 8), o);
  ASSERT_TRUE(cold.ok());
  const int64_t scoring = cold->stats.scoring_bytes_read;
  const int64_t data = cold->stats.ssd_bytes_read - scoring;
  ASSERT_GT(scoring, 0);
  ASSERT_GT(data, 0);
  // Room for every scoring key and half the selected data: something must be evicted.
  std::map<std::string, int64_t> second_scoring;
  for (const char* policy : {"attention", "lru"}) {
    ReprefillEngine::Config ec;
    ec.cache_bytes = scoring + data / 2;
    ec.cache_policy = policy;
    auto e = ReprefillEngine::Create(*model_, *store, ec);
    ASSERT_TRUE(e.ok());
    auto first = (*e)->Run(Ids(np + 8), o);
    auto second = (*e)->Run(Ids(np + 8), o);
    ASSERT_TRUE(first.ok() && second.ok());
    EXPECT_EQ(first->first_logits, second->first_logits);
    second_scoring[policy] = second->stats.scoring_bytes_read;
  }
  // Every request needs the scoring keys; the attention-guided policy gives them the period's
  // top importance and keeps them, LRU drops the oldest entries, which they are.
  EXPECT_EQ(second_scoring["attention"], 0);
  EXPECT_GT(second_scoring["lru"], 0);
}

TEST_F(ReprefillTest, ScoringKeysEnterAFullCacheWithTheirImportance) {
  auto store = OpenStore();
  const int64_t np = 300;
  const std::vector<int32_t> target = Ids(np + 8);
  std::vector<int32_t> other(all_ids_.begin() + 100, all_ids_.begin() + 100 + np + 8);
  ASSERT_TRUE(StorePrefix(*model_, *store, StoreLayout::PeriodMajor(16, 8), Ids(np)).ok());
  ASSERT_TRUE(
      StorePrefix(*model_, *store, StoreLayout::PeriodMajor(16, 8), std::span(other).first(np))
          .ok());
  ReprefillOptions o;
  o.budget = 0.5;
  auto cold = Run(*store, target, o);
  ASSERT_TRUE(cold.ok());
  const int64_t scoring = cold->stats.scoring_bytes_read;
  ReprefillEngine::Config ec;
  ec.cache_bytes = scoring + (cold->stats.ssd_bytes_read - scoring) / 2;
  auto e = ReprefillEngine::Create(*model_, *store, ec);
  ASSERT_TRUE(e.ok());
  // The other prefix fills the cache first; then the target's scoring keys come in. Entering
  // with no importance, each would evict the one before it.
  for (int i = 0; i < 2; ++i) ASSERT_TRUE((*e)->Run(other, o).ok());
  auto first = (*e)->Run(target, o);
  auto second = (*e)->Run(target, o);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(first->stats.scoring_bytes_read, scoring);
  EXPECT_LT(second->stats.scoring_bytes_read, scoring / 2);
  EXPECT_GT(second->stats.scoring_bytes_hit, scoring / 2);
  EXPECT_EQ(first->first_logits, second->first_logits);
}

// With c = 64 a chunk's keys fill a 4 KiB page on this model (64 x 32 x 2 bytes), so each
// selected unit is read without the period's first-layer keys, taken from the scoring read:
// the same answers as whole units, a K half less read per selected chunk and period.
TEST_F(ReprefillTest, ReusedScoringKeysGiveTheSameAnswersFromFewerBytes) {
  auto store = OpenStore();
  const StoreLayout layout = StoreLayout::PeriodMajor(64, 2);  // 5 layers: three periods
  const int64_t np = 450, n = 470;                             // 8 chunks, the last 2 tokens
  ASSERT_TRUE(StorePrefix(*model_, *store, layout, Ids(np)).ok());
  for (bool prefetch : {true, false}) {
    ReprefillOptions o;
    o.budget = 0.3;
    o.max_tokens = 4;
    o.prefetch = prefetch;
    o.sub_period = 1;
    o.reuse_scoring_keys = false;
    auto whole = Run(*store, Ids(n), o, layout);
    o.reuse_scoring_keys = true;
    auto reused = Run(*store, Ids(n), o, layout);
    ASSERT_TRUE(whole.ok() && reused.ok());
    ASSERT_FALSE(reused->stats.prefix_id.empty()) << reused->stats.note;
    EXPECT_EQ(reused->selections, whole->selections);
    EXPECT_EQ(reused->first_logits, whole->first_logits);
    EXPECT_EQ(reused->generated_ids, whole->generated_ids);
    EXPECT_LE(reused->stats.scoring_bytes_read, reused->stats.ssd_bytes_read);  // a part of it
    int64_t selected = 0;
    for (const auto& sel : reused->selections) selected += static_cast<int64_t>(sel.size());
    // Speculation may have read a unit that was then not selected; the whole-unit run read
    // the same units, so the difference is one K half (4 KiB) per unit read, at least one
    // per selected chunk and period.
    const int64_t saved = whole->stats.ssd_bytes_read - reused->stats.ssd_bytes_read;
    EXPECT_GE(saved, selected * 4096) << "prefetch " << prefetch;
    EXPECT_EQ(saved % 4096, 0);
    // The keys attended from scoring reads count as attended data, not identification-only.
    EXPECT_LT(reused->stats.scoring_bytes_read, whole->stats.scoring_bytes_read);
  }
  // The memory cache holds the cut units and the scoring keys: a repeat reads nothing.
  ReprefillEngine::Config ec;
  ec.layout = layout;
  ec.cache_bytes = 64 << 20;
  auto e = ReprefillEngine::Create(*model_, *store, ec);
  ASSERT_TRUE(e.ok());
  ReprefillOptions o;
  o.budget = 0.3;
  auto first = (*e)->Run(Ids(n), o);
  auto again = (*e)->Run(Ids(n), o);
  ASSERT_TRUE(first.ok() && again.ok());
  EXPECT_EQ(again->first_logits, first->first_logits);
  EXPECT_EQ(again->stats.ssd_bytes_read, 0);
  EXPECT_GT(again->stats.cache_hits, 0);
}

// The scoring reads are not verified (a selected chunk used to be read again whole and
// checked); keys attended from them are checked with their values before use, so a damaged
// key quarantines the prefix instead of reaching attention.
TEST_F(ReprefillTest, ADamagedReusedKeyIsCaughtAndTheRequestRecomputed) {
  auto store = OpenStore();
  const StoreLayout layout = StoreLayout::PeriodMajor(64, 2);
  const int64_t np = 450, n = 470;
  auto info = StorePrefix(*model_, *store, layout, Ids(np));
  ASSERT_TRUE(info.ok());
  ReprefillOptions o;
  o.budget = 0.3;
  ReprefillOptions r = o;
  r.system = "recompute";
  auto recompute_ref = Run(*store, Ids(n), r, layout);
  ASSERT_TRUE(recompute_ref.ok());
  // Chunk 0 (forced, always selected) of layer 0: its unit starts the segment, its keys are
  // the first 4 KiB; flip a byte inside them.
  auto prefix = store->OpenPrefix(info->id);
  ASSERT_TRUE(prefix.ok()) << prefix.status().ToString();
  auto ext = (*prefix)->LocateExtent(0, 0);
  ASSERT_TRUE(ext.ok());
  const std::string file = (*prefix)->files()[ext->file].path;
  prefix->reset();
  {
    std::fstream io(file, std::ios::in | std::ios::out | std::ios::binary);
    ASSERT_TRUE(io.good()) << file;
    io.seekg(static_cast<std::streamoff>(ext->offset + 100));
    char c = 0;
    io.read(&c, 1);
    c ^= 0x5a;
    io.seekp(static_cast<std::streamoff>(ext->offset + 100));
    io.write(&c, 1);
  }
  auto res = Run(*store, Ids(n), o, layout);
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  EXPECT_TRUE(res->stats.stored_prefix_failed) << res->stats.note;
  EXPECT_EQ(res->first_logits, recompute_ref->first_logits);
  EXPECT_FALSE(
      store->FindLongestPrefix(model_->transformer().fingerprint(), layout, Ids(n)).has_value());
}

// The coverage rule end to end: a smaller share of attention mass left out selects a superset
// at the first period (same queries, same scores).
TEST_F(ReprefillTest, CoverageSelectionsGrowAsLessMassMayBeLeftOut) {
  auto store = OpenStore();
  const StoreLayout layout = StoreLayout::PeriodMajor(16, 1);
  const int64_t np = 400, n = 420;
  ASSERT_TRUE(StorePrefix(*model_, *store, layout, Ids(np)).ok());
  ReprefillOptions o;
  ASSERT_TRUE(ApplySystemName("contiguouskv-coverage", o).ok());
  o.budget = 0.02;
  auto tight = Run(*store, Ids(n), o, layout);
  o.budget = 0.3;
  auto loose = Run(*store, Ids(n), o, layout);
  ASSERT_TRUE(tight.ok() && loose.ok());
  ASSERT_EQ(tight->selections.size(), 5u);
  EXPECT_TRUE(std::includes(tight->selections[0].begin(), tight->selections[0].end(),
                            loose->selections[0].begin(), loose->selections[0].end()));
  EXPECT_GT(tight->stats.attended_fraction, loose->stats.attended_fraction);
  EXPECT_LT(loose->stats.attended_fraction, 1.0);  // a loose bound prunes
}

TEST_F(ReprefillTest, NoPrefixMeansPlainPrefillAndCorruptionFallsBackToRecompute) {
  auto store = OpenStore();
  ReprefillOptions o;
  auto plain = Run(*store, Ids(50), o);
  ASSERT_TRUE(plain.ok());
  EXPECT_TRUE(plain->stats.prefix_id.empty());
  EXPECT_NE(plain->stats.note.find("plain prefill"), std::string::npos);

  const int64_t np = 200, n = 220;
  auto info = StorePrefix(*model_, *store, StoreLayout::PeriodMajor(16, 8), Ids(np));
  ASSERT_TRUE(info.ok());
  o.budget = 1.0;
  auto recompute_ref = [&] {
    ReprefillOptions r = o;
    r.system = "recompute";
    return Run(*store, Ids(n), r);
  }();
  ASSERT_TRUE(recompute_ref.ok());
  // Flip one byte in every data segment.
  for (const auto& f : std::filesystem::recursive_directory_iterator(store_dir_)) {
    if (f.path().extension() != ".kv") continue;
    std::fstream io(f.path(), std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(100);
    char c = 0;
    io.read(&c, 1);
    io.seekp(100);
    c ^= 0x5a;
    io.write(&c, 1);
  }
  auto r = Run(*store, Ids(n), o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_NE(r->stats.note.find("recomputed"), std::string::npos) << r->stats.note;
  EXPECT_EQ(r->first_logits, recompute_ref->first_logits);
  // The damaged prefix is quarantined: no longer matched.
  EXPECT_FALSE(store
                   ->FindLongestPrefix(model_->transformer().fingerprint(),
                                       StoreLayout::PeriodMajor(16, 8), Ids(n))
                   .has_value());
}

// A failure the loader itself reports (a short read: the segment shrank under an open
// prefix, which the store's open-time size check cannot see) takes the same path as a bad
// checksum: the prefix is quarantined and the request recomputed, with the reason in the note.
TEST_F(ReprefillTest, AShortReadMidRequestQuarantinesThePrefixAndRecomputes) {
  auto store = OpenStore();
  const StoreLayout layout = StoreLayout::PeriodMajor(16, 2);  // 5 layers: three periods
  const int64_t np = 256, n = 270;
  ASSERT_TRUE(StorePrefix(*model_, *store, layout, Ids(np)).ok());
  ReprefillOptions o;
  o.budget = 0.5;
  o.max_tokens = 1;
  o.prefetch = false;  // period 1's chunks are read only when layer 2 needs them
  ReprefillOptions r = o;
  r.system = "recompute";
  auto recompute_ref = Run(*store, Ids(n), r, layout);
  ASSERT_TRUE(recompute_ref.ok());

  ReprefillEngine::Config ec;
  ec.layout = layout;
  auto e = ReprefillEngine::Create(*model_, *store, ec);
  ASSERT_TRUE(e.ok());
  auto seq = (*e)->Begin(Ids(n), o);
  ASSERT_TRUE(seq.ok());
  ASSERT_TRUE((*e)->Prefill(**seq, 1).ok());  // layer 0: period 0 read and attended
  for (const auto& f : std::filesystem::recursive_directory_iterator(store_dir_)) {
    if (f.path().extension() == ".kv") std::filesystem::resize_file(f.path(), 0);
  }
  ASSERT_TRUE((*e)->Prefill(**seq).ok());
  ASSERT_TRUE((*seq)->finished());
  const ReprefillResult& res = (*seq)->result();
  EXPECT_TRUE(res.stats.stored_prefix_failed);
  EXPECT_NE(res.stats.note.find("short read"), std::string::npos) << res.stats.note;
  EXPECT_EQ(res.first_logits, recompute_ref->first_logits);
  EXPECT_FALSE(
      store->FindLongestPrefix(model_->transformer().fingerprint(), layout, Ids(n)).has_value());
  // The engine's I/O path is intact: the next request (now with no prefix) is served.
  auto next = (*e)->Run(Ids(n), o);
  ASSERT_TRUE(next.ok()) << next.status().ToString();
  EXPECT_EQ(next->first_logits, recompute_ref->first_logits);
}

TEST_F(ReprefillTest, DecodingContinuesWithTheSelectionAndErrorsAreClear) {
  auto store = OpenStore();
  const int64_t np = 256, n = 270;
  ASSERT_TRUE(StorePrefix(*model_, *store, StoreLayout::PeriodMajor(16, 8), Ids(np)).ok());
  ReprefillOptions o;
  o.budget = 1.0;
  o.max_tokens = 12;
  auto r = Run(*store, Ids(n), o);
  ASSERT_TRUE(r.ok());
  GenerateOptions go;
  go.max_tokens = 12;
  go.kv_precision = KVPrecision::kBF16;
  auto g = Generate(*model_, Ids(n), go);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(r->generated_ids, g->generated_ids);

  o.budget = 0.0;
  EXPECT_EQ(Run(*store, Ids(n), o).status().code(), StatusCode::kInvalidArgument);
  o.budget = 0.5;
  o.system = "nonsense";
  EXPECT_EQ(Run(*store, Ids(n), o).status().code(), StatusCode::kInvalidArgument);
  o.system = "contiguouskv";
  EXPECT_EQ(Run(*store, Ids(600), o).status().code(), StatusCode::kOutOfRange);
  EXPECT_EQ(Run(*store, {}, o).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ckv
