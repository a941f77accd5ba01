// The baseline systems (AS+LRU, AS+H2O+LRU, IMPRESS): their selection logic on hand-made
// cases, and each system end to end on the bundled model against full attention.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <tuple>

#include "ckv/model.h"
#include "ckv/prefix_store.h"
#include "ckv/reprefill.h"
#include "ckv/synth.h"
#include "engine/transformer.h"
#include "kernels/attention.h"
#include "kernels/convert.h"
#include "policy/h2o_selection.h"
#include "policy/impress_selection.h"
#include "test_util.h"

namespace ckv {
namespace {

using Set = std::vector<int64_t>;

// ---- H2O top-k -------------------------------------------------------------------------

TEST(H2OSelection, TokenBudgetIsCeilClamped) {
  EXPECT_EQ(TokenBudget(0.1, 450), 45);
  EXPECT_EQ(TokenBudget(0.1, 451), 46);
  EXPECT_EQ(TokenBudget(0.25, 100), 25);
  EXPECT_EQ(TokenBudget(0.001, 10), 1);
  EXPECT_EQ(TokenBudget(1.0, 7), 7);
  EXPECT_EQ(TokenBudget(0.5, 0), 0);
}

TEST(H2OSelection, TopKByScoreTiesToLowerIndexSortedAscending) {
  const std::vector<float> s = {0.1f, 0.9f, 0.3f, 0.9f, 0.0f, 0.5f};
  EXPECT_EQ(TopKTokens(s, 1), (Set{1}));
  EXPECT_EQ(TopKTokens(s, 2), (Set{1, 3}));
  EXPECT_EQ(TopKTokens(s, 3), (Set{1, 3, 5}));
  EXPECT_EQ(TopKTokens(s, 6), (Set{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(TopKTokens(s, 10), (Set{0, 1, 2, 3, 4, 5}));
  const std::vector<float> flat(5, 1.f);
  EXPECT_EQ(TopKTokens(flat, 2), (Set{0, 1}));
}

TEST(H2OSelection, ChunksHoldingTokens) {
  const std::vector<Set> sets = {{0, 1, 130}, {63, 64, 200}};
  EXPECT_EQ(ChunksOfTokens(sets, 64), (Set{0, 1, 2, 3}));
  EXPECT_EQ(ChunksOfTokens(std::vector<Set>{{5}}, 64), (Set{0}));
}

std::vector<uint16_t> RandomBf16(size_t n, std::mt19937& rng, float scale = 1.f) {
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> f(n);
  for (auto& x : f) x = d(rng);
  std::vector<uint16_t> b(n);
  F32ToBf16Row(f.data(), b.data(), n);
  return b;
}

// Head-wise mass (IMPRESS's probe and per-head scores, AttentionMassPerHead over the prefix and
// suffix keys) adds up to the all-heads H2O mass.
TEST(H2OSelection, HeadMassSumsToAllHeadMass) {
  std::mt19937 rng(3);
  const int heads = 4, kv_heads = 2, hd = 16, np = 40, ns = 5;
  const int kv_dim = kv_heads * hd;
  auto pk = RandomBf16(size_t(np) * kv_dim, rng, 2.f);
  auto sk = RandomBf16(size_t(ns) * kv_dim, rng, 2.f);
  std::normal_distribution<float> d(0.f, 1.f);
  std::vector<float> q(size_t(ns) * heads * hd);
  for (auto& x : q) x = d(rng);
  std::vector<int32_t> pos(ns);
  for (int i = 0; i < ns; ++i) pos[i] = np + i;
  const KVSpan prefix{pk.data(), nullptr, np, 0};
  const KVSpan suffix{sk.data(), nullptr, ns, np};
  const AttentionShape shape{heads, kv_heads, hd, DType::kBF16};
  const auto all =
      TokenAttentionMass(q.data(), ns, pos.data(), std::span(&prefix, 1), suffix, shape);
  ASSERT_EQ(all.size(), size_t(np));
  const KVSpan spans[2] = {prefix, suffix};
  std::vector<float> per_head(size_t(heads) * (np + ns), 0.f);
  AttentionMassPerHead(q.data(), ns, pos.data(), spans, shape, per_head.data());
  std::vector<float> sum(np, 0.f);
  for (int h = 0; h < heads; ++h) {
    for (int t = 0; t < np; ++t) sum[t] += per_head[size_t(h) * (np + ns) + t];
  }
  for (int t = 0; t < np; ++t) EXPECT_NEAR(sum[t], all[t], 1e-5f) << t;
}

// ---- IMPRESS identification --------------------------------------------------------------

TEST(ImpressSelection, JaccardOfHandMadeSets) {
  EXPECT_DOUBLE_EQ(Jaccard(Set{1, 2, 3}, Set{1, 2, 3}), 1.0);
  EXPECT_DOUBLE_EQ(Jaccard(Set{1, 2, 3}, Set{4, 5, 6}), 0.0);
  EXPECT_DOUBLE_EQ(Jaccard(Set{1, 2, 3, 4}, Set{3, 4, 5, 6}), 2.0 / 6.0);
  EXPECT_DOUBLE_EQ(Jaccard(Set{}, Set{}), 1.0);
  // Pairs: (a,b) = 2/6, (a,c) = 1, (b,c) = 2/6.
  const std::vector<Set> three = {{1, 2, 3, 4}, {3, 4, 5, 6}, {1, 2, 3, 4}};
  EXPECT_DOUBLE_EQ(AverageJaccard(three), (2.0 / 6 + 1.0 + 2.0 / 6) / 3);
  EXPECT_DOUBLE_EQ(AverageJaccard(std::vector<Set>{{1}}), 1.0);
}

TEST(ImpressSelection, ThresholdIsJToTheAlpha) {
  // j = x / (2 - x), x = k / n; t = j^0.6.
  EXPECT_NEAR(ImpressThreshold(10, 100), 0.170902273, 1e-8);  // j = 1/19
  EXPECT_NEAR(ImpressThreshold(45, 450), 0.170902273, 1e-8);
  EXPECT_NEAR(ImpressThreshold(25, 100), 0.311129489, 1e-8);  // j = 1/7
  EXPECT_NEAR(ImpressThreshold(50, 100), 0.517281858, 1e-8);  // j = 1/3
  EXPECT_DOUBLE_EQ(ImpressThreshold(100, 100), 1.0);
  EXPECT_NEAR(ImpressThreshold(50, 100, 1.0), 1.0 / 3.0, 1e-12);
  // Always above chance agreement j, and increasing in k/n.
  EXPECT_GT(ImpressThreshold(10, 100), 10.0 / 190.0);
  EXPECT_LT(ImpressThreshold(10, 100), ImpressThreshold(25, 100));
}

TEST(ImpressSelection, AgreeingProbesVoteDisagreeingProbesFallBack) {
  // n = 10, k = 3: t = (0.3/1.7)^0.6 = 0.353.
  const int64_t k = 3;
  // Three probes with the same top 3 {1, 4, 7} (differently ordered scores): J = 1 > t.
  std::vector<std::vector<float>> agree = {
      {0, 5, 0, 0, 9, 0, 0, 7, 0, 1},
      {0, 9, 0, 0, 5, 0, 0, 7, 1, 0},
      {0, 6, 0, 0, 6, 0, 2, 9, 0, 0},
  };
  auto d = DecideFromProbes(agree, k);
  EXPECT_NEAR(d.threshold, std::pow(0.3 / 1.7, 0.6), 1e-12);
  EXPECT_DOUBLE_EQ(d.jaccard, 1.0);
  EXPECT_TRUE(d.use_vote);
  EXPECT_EQ(d.voted, (Set{1, 4, 7}));
  ASSERT_EQ(d.probe_sets.size(), 3u);
  EXPECT_EQ(d.probe_sets[2], (Set{1, 4, 7}));

  // Pairwise overlaps of one token: J = 1/5 = 0.2 < 0.353: fall back to per-head selection.
  std::vector<std::vector<float>> disagree = {
      {9, 8, 7, 0, 0, 0, 0, 0, 0, 0},  // {0, 1, 2}
      {9, 0, 0, 8, 7, 0, 0, 0, 0, 0},  // {0, 3, 4}
      {9, 0, 0, 0, 0, 8, 7, 0, 0, 0},  // {0, 5, 6}
  };
  d = DecideFromProbes(disagree, k);
  EXPECT_NEAR(d.jaccard, 0.2, 1e-12);
  EXPECT_FALSE(d.use_vote);
  EXPECT_TRUE(d.voted.empty());
  EXPECT_EQ(PerHeadTopK(disagree, k), (std::vector<Set>{{0, 1, 2}, {0, 3, 4}, {0, 5, 6}}));

  // Just above and just below the threshold with two probes at k/n = 0.5 (t = 0.517):
  // overlaps of 4 of 5 (J = 4/6) vote, 3 of 5 (J = 3/7) do not.
  std::vector<float> a(10, 0.f), b(10, 0.f), c(10, 0.f);
  for (int t : {0, 1, 2, 3, 4}) a[t] = 1.f;
  for (int t : {0, 1, 2, 3, 5}) b[t] = 1.f;
  for (int t : {0, 1, 2, 5, 6}) c[t] = 1.f;
  EXPECT_TRUE(DecideFromProbes(std::vector<std::vector<float>>{a, b}, 5).use_vote);
  EXPECT_FALSE(DecideFromProbes(std::vector<std::vector<float>>{a, c}, 5).use_vote);
}

TEST(ImpressSelection, VotedSetRanksBySummedScore) {
  // Token 2 is nobody's favourite but second for both: it wins the summed ranking.
  std::vector<std::vector<float>> s = {{5, 0, 4, 0}, {0, 5, 4, 0}};
  EXPECT_EQ(VotedSet(s, 1), (Set{2}));
  EXPECT_EQ(VotedSet(s, 3), (Set{0, 1, 2}));
}

TEST(ImpressSelection, ProbeHeadsUnderGqaAndMha) {
  // stories260k: 8 heads, 4 KV heads; query heads 0,1,2 -> KV heads {0, 1}: two KV probes,
  // each scored by its whole group.
  auto p = ChooseProbeHeads(std::vector<int>{0, 1}, 8, 4, 3);
  EXPECT_FALSE(p.per_query_head);
  EXPECT_EQ(p.kv_heads, (std::vector<int>{0, 1}));
  EXPECT_EQ(p.q_heads, (std::vector<std::vector<int>>{{0, 1}, {2, 3}}));
  // Qwen2.5-7B: 28 heads, 4 KV heads; heads 0,1,2 all read KV head 0: the probes are the
  // three query heads, each with its own query.
  p = ChooseProbeHeads(std::vector<int>{0}, 28, 4, 3);
  EXPECT_TRUE(p.per_query_head);
  EXPECT_EQ(p.kv_heads, (std::vector<int>{0, 0, 0}));
  EXPECT_EQ(p.q_heads, (std::vector<std::vector<int>>{{0}, {1}, {2}}));
  // MHA (IMPRESS's own setting): heads 0,1,2 are KV heads 0,1,2.
  p = ChooseProbeHeads(std::vector<int>{0, 1, 2}, 12, 12, 3);
  EXPECT_FALSE(p.per_query_head);
  EXPECT_EQ(p.q_heads, (std::vector<std::vector<int>>{{0}, {1}, {2}}));
}

// Per-head sets through the one-context kernel equal attention run per KV head.
TEST(ImpressSelection, GatheredRowsGiveEachHeadItsOwnTokens) {
  std::mt19937 rng(5);
  const int heads = 4, kv_heads = 2, hd = 16, np = 48, ns = 6, k = 12;
  const int kv_dim = kv_heads * hd, group = heads / kv_heads;
  auto pk = RandomBf16(size_t(np) * kv_dim, rng, 2.f), pv = RandomBf16(size_t(np) * kv_dim, rng);
  auto sk = RandomBf16(size_t(ns) * kv_dim, rng, 2.f), sv = RandomBf16(size_t(ns) * kv_dim, rng);
  std::normal_distribution<float> d(0.f, 1.f);
  std::vector<float> q(size_t(ns) * heads * hd);
  for (auto& x : q) x = d(rng);
  std::vector<int32_t> pos(ns);
  for (int i = 0; i < ns; ++i) pos[i] = np + i;
  const std::vector<Set> sets = {{0, 1, 2, 3, 10, 11, 20, 21, 30, 40, 46, 47},
                                 {0, 5, 6, 7, 8, 9, 15, 25, 35, 44, 45, 47}};
  std::vector<uint16_t> gk(size_t(k) * kv_dim), gv(size_t(k) * kv_dim);
  GatherHeadRows(
      sets, hd,
      [&](int64_t t) { return std::make_pair(pk.data() + t * kv_dim, pv.data() + t * kv_dim); },
      gk.data(), gv.data());
  const KVSpan spans[2] = {{gk.data(), gv.data(), k, 0}, {sk.data(), sv.data(), ns, np}};
  std::vector<float> out(q.size());
  Attention(q.data(), ns, pos.data(), spans, {heads, kv_heads, hd, DType::kBF16}, out.data());

  for (int g = 0; g < kv_heads; ++g) {
    // Reference: only head g, only its tokens, at their real positions.
    std::vector<uint16_t> hk, hv, hsk, hsv;
    std::vector<KVSpan> ref;
    for (int64_t t : sets[g]) {
      hk.insert(hk.end(), pk.begin() + t * kv_dim + g * hd, pk.begin() + t * kv_dim + (g + 1) * hd);
      hv.insert(hv.end(), pv.begin() + t * kv_dim + g * hd, pv.begin() + t * kv_dim + (g + 1) * hd);
    }
    for (int t = 0; t < ns; ++t) {
      hsk.insert(hsk.end(), sk.begin() + t * kv_dim + g * hd,
                 sk.begin() + t * kv_dim + (g + 1) * hd);
      hsv.insert(hsv.end(), sv.begin() + t * kv_dim + g * hd,
                 sv.begin() + t * kv_dim + (g + 1) * hd);
    }
    for (int r = 0; r < k; ++r)
      ref.push_back({hk.data() + r * hd, hv.data() + r * hd, 1, sets[g][r]});
    ref.push_back({hsk.data(), hsv.data(), ns, np});
    std::vector<float> qg(size_t(ns) * group * hd), og(qg.size());
    for (int i = 0; i < ns; ++i) {
      std::copy_n(q.data() + (size_t(i) * heads + g * group) * hd, group * hd,
                  qg.data() + size_t(i) * group * hd);
    }
    Attention(qg.data(), ns, pos.data(), ref, {group, 1, hd, DType::kBF16}, og.data());
    for (int i = 0; i < ns; ++i) {
      for (int x = 0; x < group * hd; ++x) {
        EXPECT_FLOAT_EQ(out[(size_t(i) * heads + g * group) * hd + x],
                        og[size_t(i) * group * hd + x]);
      }
    }
  }
}

// ---- The systems end to end on the bundled model ------------------------------------------

struct SystemCase {
  std::string system;
  StoreLayout layout;
};

const std::vector<SystemCase>& Cases() {
  static const std::vector<SystemCase> cases = {
      {"as-lru", StoreLayout::LayerMajor(64)},     {"as-lru", StoreLayout::PeriodMajor(16, 2)},
      {"as-h2o-lru", StoreLayout::LayerMajor(64)}, {"as-h2o-lru", StoreLayout::PeriodMajor(64, 2)},
      {"impress", StoreLayout::Impress(64, 3)},
  };
  return cases;
}

class BaselinesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto m = Model::Load(test::BundledModelDir());
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    model_ = std::move(m).value().release();
    const std::string text = test::ReadFileOrDie(test::TextDataDir() + "/tinystories.txt");
    auto ids = model_->tokenizer()->Encode(text, true);
    ASSERT_TRUE(ids.ok());
    all_ids_ = new std::vector<int32_t>(*ids);
  }
  static void TearDownTestSuite() {
    delete model_;
    delete all_ids_;
  }
  void SetUp() override { store_dir_ = test::MakeTempDir("baselines"); }

  std::unique_ptr<PrefixStore> OpenStore() {
    StoreOptions so;
    so.sync = false;
    auto s = PrefixStore::Open(store_dir_, so);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? std::move(s).value() : nullptr;
  }
  static std::vector<int32_t> Ids(int64_t n) { return {all_ids_->begin(), all_ids_->begin() + n}; }

  static std::vector<float> TwoStepLogits(int64_t n_prefix, int64_t n) {
    KVCache kv = model_->NewCache(KVPrecision::kBF16, n);
    std::vector<float> logits;
    const auto ids = Ids(n);
    EXPECT_TRUE(model_->Forward(std::span(ids).first(n_prefix), kv, nullptr).ok());
    EXPECT_TRUE(model_->Forward(std::span(ids).subspan(n_prefix), kv, &logits).ok());
    return logits;
  }

  static std::unique_ptr<ReprefillEngine> Engine(PrefixStore& store, const StoreLayout& layout,
                                                 int64_t cache_bytes = 0,
                                                 const std::string& cache_policy = "lru",
                                                 int64_t prefetch_bytes = 64 << 20) {
    ReprefillEngine::Config ec;
    ec.prefetch_bytes = prefetch_bytes;
    ec.layout = layout;
    ec.cache_bytes = cache_bytes;
    ec.cache_policy = cache_policy;
    auto e = ReprefillEngine::Create(*model_, store, ec);
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    return e.ok() ? std::move(e).value() : nullptr;
  }

  static inline Model* model_ = nullptr;
  static inline std::vector<int32_t>* all_ids_ = nullptr;
  std::string store_dir_;
};

TEST_F(BaselinesTest, SystemsAreRegistered) {
  const auto s = ReprefillSystems();
  for (const char* name : {"contiguouskv", "as-lru", "as-h2o-lru", "impress", "recompute"}) {
    EXPECT_NE(std::find(s.begin(), s.end(), name), s.end()) << name;
  }
}

// Budget 1: every token is attended in position order with the same tiling, so the first
// logits equal prefill-then-suffix exactly.
TEST_F(BaselinesTest, BudgetOneEqualsFullAttentionExactly) {
  auto store = OpenStore();
  const int64_t np = 300, n = 310;
  const auto ref = TwoStepLogits(np, n);
  for (const auto& c : Cases()) {
    ASSERT_TRUE(StorePrefix(*model_, *store, c.layout, Ids(np)).ok());
    auto e = Engine(*store, c.layout);
    ReprefillOptions o;
    o.system = c.system;
    o.budget = 1.0;
    auto r = e->Run(Ids(n), o);
    ASSERT_TRUE(r.ok()) << c.system << ": " << r.status().ToString();
    EXPECT_EQ(r->stats.prefix_tokens, np);
    EXPECT_EQ(r->first_logits, ref) << c.system << " " << c.layout.ToString();
    EXPECT_DOUBLE_EQ(r->stats.attended_fraction, 1.0) << c.system;
    EXPECT_GE(r->stats.read_amplification, 1.0) << c.system;
    EXPECT_LT(r->stats.read_amplification, 1.7) << c.system;  // 4 KiB padding of small units
  }
}

TEST_F(BaselinesTest, BudgetsGiveSaneStats) {
  auto store = OpenStore();
  const int64_t np = 450, n = 470;  // 8 chunks of 64, the last one 2 tokens
  const int L = model_->config().num_layers;
  const auto ref = TwoStepLogits(np, n);
  for (const auto& c : Cases()) {
    ASSERT_TRUE(StorePrefix(*model_, *store, c.layout, Ids(np)).ok());
    auto e = Engine(*store, c.layout);
    for (double budget : {0.1, 0.25, 0.5}) {
      ReprefillOptions o;
      o.system = c.system;
      o.budget = budget;
      auto r = e->Run(Ids(n), o);
      const std::string what =
          c.system + " " + c.layout.ToString() + " r=" + std::to_string(budget);
      ASSERT_TRUE(r.ok()) << what << ": " << r.status().ToString();
      const auto& s = r->stats;
      EXPECT_EQ(s.prefix_tokens, np) << what;
      EXPECT_GT(s.ssd_bytes_read, 0) << what;
      EXPECT_EQ(r->first_logits.size(), ref.size());
      for (float x : r->first_logits) ASSERT_TRUE(std::isfinite(x)) << what;
      const int64_t k = TokenBudget(budget, np);
      if (c.system == "as-lru") {
        EXPECT_DOUBLE_EQ(s.attended_fraction, 1.0) << what;  // ignores the budget
        EXPECT_EQ(r->first_logits, ref) << what;
        EXPECT_EQ(s.scoring_bytes_read, 0) << what;
        EXPECT_GE(s.read_amplification, 1.0) << what;
      } else {
        // Token-level systems attend exactly k tokens per layer (per head for IMPRESS).
        EXPECT_NEAR(s.attended_fraction, double(k) / np, 1e-12) << what;
        EXPECT_EQ(s.attended_bytes, k * L * model_->config().kv_dim() * 2 * 2) << what;
        // Identification reads every key (H2O) or the probe copy (IMPRESS) beyond the
        // attended bytes; blocks without a selected token count as scoring reads.
        EXPECT_GT(s.ssd_bytes_read, s.attended_bytes) << what;
        if (c.system == "impress") {
          EXPECT_GT(s.scoring_bytes_read, 0) << what;
        }
        // Whole blocks for scattered tokens.
        EXPECT_GT(s.read_amplification, 1.0) << what;
        EXPECT_GT(s.chunks_selected, 0) << what;
        EXPECT_LE(s.chunks_selected, L * 8) << what;
      }
      if (c.system == "impress") {
        EXPECT_NE(s.note.find("impress: probe vote used in"), std::string::npos) << s.note;
        std::cout << what << ": " << s.note << ", read amplification " << s.read_amplification
                  << "\n";
      } else {
        std::cout << what << ": read amplification " << s.read_amplification << ", attended "
                  << s.attended_fraction << "\n";
      }
    }
  }
}

// The policies release each layer's buffers once it is attended: a prefetch pool of a few
// layers' units suffices, so no read falls back to the synchronous overflow path.
TEST_F(BaselinesTest, BuffersAreReleasedLayerByLayer) {
  auto store = OpenStore();
  // Layer-major: a layer is 8 units of 8 KiB, the whole prefix 320 KiB; period-major (16, 2): a
  // period is 29 units of 4 KiB.
  const int64_t np = 450, n = 460;
  const auto ref = TwoStepLogits(np, n);
  for (const auto& c : Cases()) {
    ASSERT_TRUE(StorePrefix(*model_, *store, c.layout, Ids(np)).ok());
    auto e = Engine(*store, c.layout, 0, "lru", 256 << 10);
    ReprefillOptions o;
    o.system = c.system;
    o.budget = 1.0;
    auto r = e->Run(Ids(n), o);
    ASSERT_TRUE(r.ok()) << c.system;
    EXPECT_EQ(r->first_logits, ref) << c.system;
    EXPECT_EQ(r->stats.buffer_overflows, 0) << c.system << " " << c.layout.ToString();
    EXPECT_LE(r->stats.prefetch_peak_bytes, 256 << 10);
  }
}

TEST_F(BaselinesTest, RepeatedRequestsHitTheCache) {
  auto store = OpenStore();
  const int64_t np = 300, n = 310;
  for (const auto& c : Cases()) {
    ASSERT_TRUE(StorePrefix(*model_, *store, c.layout, Ids(np)).ok());
    auto e = Engine(*store, c.layout, 64 << 20, c.system == "impress" ? "impress" : "lru");
    ReprefillOptions o;
    o.system = c.system;
    o.budget = 0.25;
    auto first = e->Run(Ids(n), o);
    auto second = e->Run(Ids(n), o);
    ASSERT_TRUE(first.ok() && second.ok()) << c.system;
    EXPECT_EQ(first->stats.cache_hits, 0) << c.system;
    EXPECT_GT(second->stats.cache_hits, 0) << c.system;
    EXPECT_LT(second->stats.ssd_bytes_read, first->stats.ssd_bytes_read) << c.system;
    EXPECT_EQ(second->stats.ssd_bytes_read, 0) << c.system;  // same request, all cached
    EXPECT_EQ(first->first_logits, second->first_logits) << c.system;
  }
}

// The attention mass per prefix key (a second pass over the keys) is computed only when the
// cache ranks by it: a system run with LRU, IMPRESS's score or no cache does not pay for it,
// and computing it never changes the answer.
TEST_F(BaselinesTest, TheObserverPassRunsOnlyWhenTheCacheRanksByAttention) {
  auto store = OpenStore();
  const int64_t np = 300, n = 310;
  const int L = model_->config().num_layers;
  auto cases = Cases();
  cases.push_back({"contiguouskv", StoreLayout::PeriodMajor(16, 2)});
  for (const auto& c : cases) {
    ASSERT_TRUE(StorePrefix(*model_, *store, c.layout, Ids(np)).ok());
    std::vector<float> logits;
    for (const auto& [cache_bytes, policy, observed] :
         std::vector<std::tuple<int64_t, std::string, int>>{{0, "lru", 0},
                                                            {64 << 20, "lru", 0},
                                                            {64 << 20, "impress", 0},
                                                            {64 << 20, "attention", L}}) {
      auto e = Engine(*store, c.layout, cache_bytes, policy);
      ReprefillOptions o;
      o.system = c.system;
      o.budget = 0.25;
      auto r = e->Run(Ids(n), o);
      const std::string what = c.system + " " + c.layout.ToString() + " cache " +
                               std::to_string(cache_bytes) + " " + policy;
      ASSERT_TRUE(r.ok()) << what << ": " << r.status().ToString();
      EXPECT_EQ(r->stats.observed_layers, observed) << what;
      if (logits.empty()) logits = r->first_logits;
      EXPECT_EQ(r->first_logits, logits) << what;
    }
  }
}

// Identification data that no selection decides (H2O's keys, IMPRESS's probe-key copy) is read
// a layer ahead, as ContiguousKV's scoring keys are: layer 1's identification reads start
// before layer 0 has finished computing. Without prefetch they start only in layer 1.
TEST_F(BaselinesTest, IdentificationReadsStartALayerAhead) {
  auto store = OpenStore();
  const int64_t np = 450, n = 470;
  for (const auto& [system, layout, read_name] :
       std::vector<std::tuple<std::string, StoreLayout, std::string>>{
           {"as-h2o-lru", StoreLayout::LayerMajor(64), "read K L1 c0"},
           {"impress", StoreLayout::Impress(64, 3), "read probe L1"}}) {
    ASSERT_TRUE(StorePrefix(*model_, *store, layout, Ids(np)).ok());
    auto e = Engine(*store, layout);
    for (bool prefetch : {true, false}) {
      ReprefillOptions o;
      o.system = system;
      o.budget = 0.25;
      o.prefetch = prefetch;
      o.trace_path = store_dir_ + "/trace.json";
      auto r = e->Run(Ids(n), o);
      ASSERT_TRUE(r.ok()) << system << ": " << r.status().ToString();
      std::ifstream in(o.trace_path);
      const auto trace = nlohmann::json::parse(in);
      double read_begin = -1, layer0_end = -1;
      for (const auto& ev : trace["traceEvents"]) {
        if (ev.value("ph", "") != "X") continue;
        const std::string name = ev["name"];
        if (name == read_name) read_begin = ev["ts"].get<double>();
        if (name == "layer 0") layer0_end = ev["ts"].get<double>() + ev["dur"].get<double>();
      }
      ASSERT_GE(read_begin, 0) << system << ": no event " << read_name;
      ASSERT_GE(layer0_end, 0) << system;
      if (prefetch) {
        EXPECT_LT(read_begin, layer0_end) << system;
      } else {
        EXPECT_GT(read_begin, layer0_end) << system;
      }
    }
  }
}

TEST_F(BaselinesTest, WrongLayoutIsRefused) {
  auto store = OpenStore();
  const int64_t np = 200, n = 210;
  ASSERT_TRUE(StorePrefix(*model_, *store, StoreLayout::LayerMajor(64), Ids(np)).ok());
  ASSERT_TRUE(StorePrefix(*model_, *store, StoreLayout::Impress(64, 3), Ids(np)).ok());
  ReprefillOptions o;
  o.system = "impress";
  auto r = Engine(*store, StoreLayout::LayerMajor(64))->Run(Ids(n), o);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  for (const char* sys : {"as-lru", "as-h2o-lru"}) {
    o.system = sys;
    r = Engine(*store, StoreLayout::Impress(64, 3))->Run(Ids(n), o);
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << sys;
  }
}

// Flips one byte at `offset` of every data segment.
void CorruptSegments(const std::string& dir, uint64_t offset) {
  for (const auto& f : std::filesystem::recursive_directory_iterator(dir)) {
    if (f.path().extension() != ".kv") continue;
    std::fstream io(f.path(), std::ios::in | std::ios::out | std::ios::binary);
    io.seekg(static_cast<std::streamoff>(offset));
    char c = 0;
    io.read(&c, 1);
    io.seekp(static_cast<std::streamoff>(offset));
    c ^= 0x5a;
    io.write(&c, 1);
  }
}

TEST_F(BaselinesTest, CorruptionFallsBackToRecompute) {
  const int64_t np = 200, n = 220;
  ReprefillOptions rec;
  rec.system = "recompute";
  std::vector<float> recomputed;
  struct Damage {
    SystemCase c;
    double budget;
    uint64_t offset;  // in every .kv segment (from the probe copy's start when `probe`)
    bool probe = false;
  };
  const std::vector<Damage> damages = {
      {{"as-lru", StoreLayout::LayerMajor(64)}, 0.1, 100},
      // Layer 0, block 0: byte 100 is a key (row 1), byte 4196 a value; both attended at
      // budget 1. (At smaller budgets a damaged key of a block without selected tokens only
      // steers the selection and goes undetected, like ContiguousKV's scoring reads.)
      {{"as-h2o-lru", StoreLayout::LayerMajor(64)}, 1.0, 100},
      {{"as-h2o-lru", StoreLayout::LayerMajor(64)}, 1.0, 4096 + 100},
      {{"impress", StoreLayout::Impress(64, 3)}, 1.0, 100},
      {{"impress", StoreLayout::Impress(64, 3)}, 0.25, 100, true},
  };
  for (const auto& d : damages) {
    store_dir_ = test::MakeTempDir("baselines-corrupt");
    auto store = OpenStore();
    auto info = StorePrefix(*model_, *store, d.c.layout, Ids(np));
    ASSERT_TRUE(info.ok());
    auto e = Engine(*store, d.c.layout);
    if (recomputed.empty()) {
      auto r = e->Run(Ids(n), rec);
      ASSERT_TRUE(r.ok());
      recomputed = r->first_logits;
    }
    uint64_t offset = d.offset;
    if (d.probe) {
      auto h = store->OpenPrefix(info->id);
      ASSERT_TRUE(h.ok());
      offset += (*h)->ProbeKeyBlocks(0)[0].extent.offset;
    }
    CorruptSegments(store_dir_, offset);
    ReprefillOptions o;
    o.system = d.c.system;
    o.budget = d.budget;
    auto r = e->Run(Ids(n), o);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_NE(r->stats.note.find("recomputed"), std::string::npos)
        << d.c.system << " r=" << d.budget << ": " << r->stats.note;
    EXPECT_EQ(r->first_logits, recomputed) << d.c.system;
    EXPECT_FALSE(store->FindLongestPrefix(model_->transformer().fingerprint(), d.c.layout, Ids(n))
                     .has_value())
        << d.c.system;
  }
}

TEST_F(BaselinesTest, DecodingContinuesWithTheSelection) {
  auto store = OpenStore();
  const int64_t np = 256, n = 270;
  GenerateOptions go;
  go.max_tokens = 10;
  go.kv_precision = KVPrecision::kBF16;
  auto g = Generate(*model_, Ids(n), go);
  ASSERT_TRUE(g.ok());
  for (const auto& c : Cases()) {
    ASSERT_TRUE(StorePrefix(*model_, *store, c.layout, Ids(np)).ok());
    auto e = Engine(*store, c.layout);
    ReprefillOptions o;
    o.system = c.system;
    o.max_tokens = 10;
    o.budget = 1.0;
    auto full = e->Run(Ids(n), o);
    ASSERT_TRUE(full.ok());
    EXPECT_EQ(full->generated_ids, g->generated_ids) << c.system;
    o.budget = 0.25;
    auto part = e->Run(Ids(n), o);
    ASSERT_TRUE(part.ok()) << c.system << ": " << part.status().ToString();
    EXPECT_TRUE(part->stats.note.find("recomputed") == std::string::npos) << part->stats.note;
  }
}

// On random weights the heads attend almost uniformly, so the probes' top-k sets agree about
// as much as chance and IMPRESS falls back to per-head selection. The model has Qwen2.5-7B's
// GQA shape in small (query heads 0,1,2 share KV head 0: the probes are query heads).
TEST(ImpressOnRandomWeights, FallsBackToPerHeadSelection) {
  ModelConfig c;
  c.arch = ModelArch::kQwen2;
  c.model_type = "qwen2";
  c.hidden_size = 64;
  c.intermediate_size = 96;
  c.num_layers = 3;
  c.num_heads = 8;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  c.vocab_size = 300;
  c.max_position_embeddings = 512;
  c.rms_norm_eps = 1e-6f;
  c.rope_theta = 1000000.0f;
  c.attention_bias = true;
  c.eos_token_ids = {299};
  const std::string dir = test::MakeTempDir("impress-synth");
  SynthOptions so;
  so.seed = 7;
  ASSERT_TRUE(SynthesizeModel(c, dir, so).ok());
  ModelOptions mo;
  mo.require_tokenizer = false;
  auto model = Model::Load(dir, mo);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  std::vector<int32_t> ids;
  for (int i = 0; i < 330; ++i) ids.push_back((i * 37 + 11) % 299);
  const int64_t np = 320;
  StoreOptions sto;
  sto.sync = false;
  auto store = PrefixStore::Open(test::MakeTempDir("impress-synth-store"), sto);
  ASSERT_TRUE(store.ok());
  const auto layout = StoreLayout::Impress(64, 3);
  ASSERT_TRUE(StorePrefix(**model, **store, layout, std::span(ids).first(np)).ok());
  ReprefillEngine::Config ec;
  ec.layout = layout;
  auto e = ReprefillEngine::Create(**model, **store, ec);
  ASSERT_TRUE(e.ok());

  ReprefillOptions o;
  o.system = "impress";
  o.budget = 1.0;
  auto full = (*e)->Run(ids, o);
  ASSERT_TRUE(full.ok());
  KVCache kv = (*model)->NewCache(KVPrecision::kBF16, 330);
  std::vector<float> ref;
  ASSERT_TRUE((*model)->Forward(std::span(ids).first(np), kv, nullptr).ok());
  ASSERT_TRUE((*model)->Forward(std::span(ids).subspan(np), kv, &ref).ok());
  EXPECT_EQ(full->first_logits, ref);

  o.budget = 0.1;
  auto r = (*e)->Run(ids, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  int voted = -1, layers = -1;
  ASSERT_EQ(
      std::sscanf(r->stats.note.c_str(), "impress: probe vote used in %d of %d", &voted, &layers),
      2)
      << r->stats.note;
  std::cout << r->stats.note << ", read amplification " << r->stats.read_amplification << "\n";
  EXPECT_EQ(layers, 3);
  EXPECT_LT(voted, layers);
  const int64_t k = TokenBudget(0.1, np);
  EXPECT_NEAR(r->stats.attended_fraction, double(k) / np, 1e-12);
  EXPECT_EQ(r->stats.attended_bytes, k * 3 * c.kv_dim() * 2 * 2);
  // The probe copy: 320 tokens x 1 probe KV head x 16 dims bf16 = 10 KiB, three 4 KiB blocks
  // per layer. The fallback also reads every K chunk of its layers (counted as scoring only for
  // chunks that end up without a selected token).
  const int64_t probe_bytes = 3 * 3 * 4096;
  EXPECT_GE(r->stats.scoring_bytes_read, probe_bytes);
  EXPECT_GT(r->stats.read_amplification, 1.0);
  for (float x : r->first_logits) ASSERT_TRUE(std::isfinite(x));

  // impress-vote (the best case): the vote stands in every layer, so identification reads the
  // probe copy and nothing else.
  ReprefillOptions best;
  ASSERT_TRUE(ApplySystemName("impress-vote", best).ok());
  EXPECT_EQ(best.system, "impress");
  EXPECT_TRUE(best.impress_always_vote);
  best.budget = 0.1;
  auto v = (*e)->Run(ids, best);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  ASSERT_EQ(
      std::sscanf(v->stats.note.c_str(), "impress: probe vote used in %d of %d", &voted, &layers),
      2);
  EXPECT_EQ(voted, 3);
  EXPECT_EQ(v->stats.scoring_bytes_read, probe_bytes);
  EXPECT_NEAR(v->stats.attended_fraction, double(k) / np, 1e-12);
  // One voted set for all heads: each KV head attends to the same k tokens.
  for (const auto& sel : v->selections) EXPECT_FALSE(sel.empty());
}

TEST(SystemNames, AliasesSetOptionsAndUnknownNamesAreRefused) {
  ReprefillOptions o;
  ASSERT_TRUE(ApplySystemName("contiguouskv-summaries", o).ok());
  EXPECT_EQ(o.system, "contiguouskv");
  EXPECT_EQ(o.scoring, ScoringSource::kSummaries);
  ReprefillOptions whole;
  ASSERT_TRUE(ApplySystemName("contiguouskv-whole-units", whole).ok());
  EXPECT_EQ(whole.system, "contiguouskv");
  EXPECT_FALSE(whole.reuse_scoring_keys);
  EXPECT_EQ(whole.scoring, ScoringSource::kFullKeys);
  EXPECT_EQ(whole.selection, SelectionRule::kTopFraction);
  ReprefillOptions coverage;
  ASSERT_TRUE(ApplySystemName("contiguouskv-coverage", coverage).ok());
  EXPECT_EQ(coverage.system, "contiguouskv");
  EXPECT_EQ(coverage.selection, SelectionRule::kMassCoverage);
  ReprefillOptions caller;
  caller.reuse_scoring_keys = false;  // a base name keeps the caller's options
  ASSERT_TRUE(ApplySystemName("contiguouskv", caller).ok());
  EXPECT_FALSE(caller.reuse_scoring_keys);
  for (const std::string& s : ReprefillSystems()) {
    ReprefillOptions p;
    ASSERT_TRUE(ApplySystemName(s, p).ok()) << s;
    EXPECT_EQ(p.system, s);
  }
  auto bad = ApplySystemName("lmcache", o);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.ToString().find("lmcache"), std::string::npos);
  const StoreLayout ckv = StoreLayout::PeriodMajor(16, 8);
  EXPECT_EQ(DefaultLayoutFor("contiguouskv-summaries", ckv), ckv);
  EXPECT_EQ(DefaultLayoutFor("impress-vote", ckv), StoreLayout::Impress(64, 3));
  EXPECT_EQ(DefaultLayoutFor("as-h2o-lru", ckv), StoreLayout::LayerMajor(64));
  EXPECT_EQ(DefaultCachePolicyFor("contiguouskv"), "attention");
  EXPECT_EQ(DefaultCachePolicyFor("as-lru"), "lru");
  EXPECT_EQ(DefaultCachePolicyFor("impress-vote"), "impress");
  // Every name the table holds is accepted, and the refusal lists them all.
  for (const std::string& s : ReprefillSystemNames()) {
    ReprefillOptions p;
    EXPECT_TRUE(ApplySystemName(s, p).ok()) << s;
    EXPECT_NE(bad.message().find(s), std::string::npos) << bad.message();
  }
  EXPECT_EQ(ReprefillSystemNames().size(), ReprefillSystems().size() + 4);  // four aliases
  // A base name keeps the caller's options; an alias sets its own.
  ReprefillOptions keep;
  keep.scoring = ScoringSource::kSummaries;
  ASSERT_TRUE(ApplySystemName("contiguouskv", keep).ok());
  EXPECT_EQ(keep.scoring, ScoringSource::kSummaries);
  EXPECT_FALSE(SystemReadsStoredPrefix("recompute"));
  EXPECT_FALSE(SystemReadsStoredPrefix("lmcache"));
  EXPECT_TRUE(SystemReadsStoredPrefix("impress-vote"));
  // The engine runs policies, not aliases: an alias given as ReprefillOptions::system directly
  // is refused (ApplySystemName resolves it).
}

}  // namespace
}  // namespace ckv
