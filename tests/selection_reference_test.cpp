// Below budget 1, each policy's selection against an independent scorer over the in-memory KV:
// the attention probability each prefix token receives from the suffix queries, computed here
// in double precision (causal softmax per query head over [prefix keys, suffix keys], summed
// over query tokens and heads), then the selection rule of each paper written out again.
// The policies read the same KV back from a store (every layout) and score it with the
// engine's kernels; where the two disagree, the tokens involved must be a near-tie.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>

#include "cache/chunk_cache.h"
#include "ckv/prefix_store.h"
#include "ckv/reprefill.h"
#include "kernels/dtype.h"
#include "pipeline/kv_source_policy.h"
#include "pipeline/prefix_range_reader.h"
#include "pipeline/trace.h"
#include "pipeline/unit_loader.h"
#include "test_util.h"

namespace ckv {
namespace {

constexpr int kLayers = 4, kHeads = 4, kKvHeads = 2, kHd = 16, kKvDim = kKvHeads * kHd;
constexpr int64_t kPrefix = 450;  // 8 chunks of 64, the last one 2 tokens
constexpr int kSuffix = 12;

ModelConfig Config() {
  return test::TinyConfig(kLayers, kHeads, kKvHeads, kHd);
}

// Prefix KV per layer (bf16), suffix keys and queries per layer: random, with a few prefix
// tokens made salient so selections are not decided by noise alone.
struct Data {
  std::vector<std::vector<uint16_t>> k, v, suffix_k;
  std::vector<std::vector<float>> q;
  std::vector<KVLayerData> layers;
};

Data MakeData(uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  Data d;
  for (int l = 0; l < kLayers; ++l) {
    d.k.emplace_back(kPrefix * kKvDim);
    d.v.emplace_back(kPrefix * kKvDim);
    d.suffix_k.emplace_back(kSuffix * kKvDim);
    d.q.emplace_back(static_cast<size_t>(kSuffix) * kHeads * kHd);
    for (auto& x : d.k[l]) x = F32ToBf16(nd(rng));
    for (auto& x : d.v[l]) x = F32ToBf16(nd(rng));
    for (auto& x : d.suffix_k[l]) x = F32ToBf16(nd(rng));
    for (auto& x : d.q[l]) x = nd(rng);
    // Salient tokens: keys aligned with the mean query direction of each head.
    for (int s = 0; s < 30; ++s) {
      const int64_t t = std::uniform_int_distribution<int64_t>(0, kPrefix - 1)(rng);
      for (int g = 0; g < kKvHeads; ++g) {
        for (int c = 0; c < kHd; ++c) {
          double mean = 0;
          for (int i = 0; i < kSuffix; ++i) mean += d.q[l][(i * kHeads + g * 2) * kHd + c];
          d.k[l][t * kKvDim + g * kHd + c] = F32ToBf16(static_cast<float>(mean / kSuffix) * 3.f);
        }
      }
    }
  }
  for (int l = 0; l < kLayers; ++l) d.layers.push_back({d.k[l].data(), d.v[l].data()});
  return d;
}

// The independent scorer: mass per prefix token at layer l.
std::vector<double> ReferenceMass(const Data& d, int l) {
  std::vector<double> mass(kPrefix, 0.0);
  const int group = kHeads / kKvHeads;
  const double scale = 1.0 / std::sqrt(static_cast<double>(kHd));
  for (int i = 0; i < kSuffix; ++i) {
    for (int h = 0; h < kHeads; ++h) {
      const int g = h / group;
      const float* qi = d.q[l].data() + (static_cast<size_t>(i) * kHeads + h) * kHd;
      std::vector<double> s;
      auto dot = [&](const uint16_t* key) {
        double acc = 0;
        for (int c = 0; c < kHd; ++c) acc += static_cast<double>(qi[c]) * Bf16ToF32(key[c]);
        return acc * scale;
      };
      for (int64_t t = 0; t < kPrefix; ++t) s.push_back(dot(&d.k[l][t * kKvDim + g * kHd]));
      for (int j = 0; j <= i; ++j) s.push_back(dot(&d.suffix_k[l][j * kKvDim + g * kHd]));
      const double mx = *std::max_element(s.begin(), s.end());
      double sum = 0;
      for (double& x : s) sum += (x = std::exp(x - mx));
      for (int64_t t = 0; t < kPrefix; ++t) mass[t] += s[t] / sum;
    }
  }
  return mass;
}

int64_t Ceil(double r, int64_t n) {
  return std::clamp<int64_t>(static_cast<int64_t>(std::ceil(r * static_cast<double>(n) - 1e-9)), 1,
                             n);
}

// Indices of the k largest, ascending; ties to the lower index.
std::vector<int64_t> TopK(const std::vector<double>& score, int64_t k) {
  std::vector<int64_t> idx(score.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<int64_t>(i);
  std::stable_sort(idx.begin(), idx.end(),
                   [&](int64_t a, int64_t b) { return score[a] > score[b]; });
  idx.resize(static_cast<size_t>(k));
  std::sort(idx.begin(), idx.end());
  return idx;
}

// Every element in one set and not the other scores within `tol` of the k-th best: a near-tie
// the engine's float arithmetic may break the other way.
void ExpectSameUpToTies(const std::vector<int64_t>& got, const std::vector<int64_t>& want,
                        const std::vector<double>& score, const std::string& what) {
  std::vector<double> sorted = score;
  std::sort(sorted.rbegin(), sorted.rend());
  const double kth = sorted[want.size() - 1];
  const double tol = 1e-4 * sorted[0];
  std::vector<int64_t> diff;
  std::set_symmetric_difference(got.begin(), got.end(), want.begin(), want.end(),
                                std::back_inserter(diff));
  EXPECT_LE(diff.size(), 2u) << what;
  for (int64_t t : diff) EXPECT_NEAR(score[t], kth, tol) << what << ": element " << t;
}

class SelectionReference : public ::testing::TestWithParam<double> {
 protected:
  struct Setup {
    std::unique_ptr<PrefixStore> store;
    std::shared_ptr<const PrefixHandle> prefix;
    std::unique_ptr<UnitLoader> loader;
    Tracer tracer{false};
    ReprefillOptions opts;
    RequestContext rc;
  };

  std::unique_ptr<Setup> Prepare(const Data& d, const StoreLayout& layout) {
    auto s = std::make_unique<Setup>();
    StoreOptions so;
    so.sync = false;
    auto store = PrefixStore::Open(test::MakeTempDir("selection-ref"), so);
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    s->store = std::move(store).value();
    std::vector<int32_t> tokens(kPrefix);
    for (int64_t t = 0; t < kPrefix; ++t) tokens[t] = static_cast<int32_t>(t % 1000);
    auto info = s->store->Put(7, Config(), layout, tokens, d.layers);
    EXPECT_TRUE(info.ok()) << info.status().ToString();
    auto h = s->store->OpenPrefix(info->id);
    EXPECT_TRUE(h.ok()) << h.status().ToString();
    s->prefix = *h;
    LoaderOptions lo;
    lo.buffer_bytes = size_t{8} << 20;
    auto loader = UnitLoader::Create(lo, nullptr);
    EXPECT_TRUE(loader.ok());
    s->loader = std::move(loader).value();
    s->opts.budget = GetParam();
    static const ModelConfig cfg = Config();
    s->rc.config = &cfg;
    s->rc.prefix = s->prefix;
    s->rc.prefix_tokens = kPrefix;
    s->rc.n_chunks = (kPrefix + layout.chunk_tokens - 1) / layout.chunk_tokens;
    s->rc.opts = &s->opts;
    s->rc.loader = s->loader.get();
    s->rc.tracer = &s->tracer;
    return s;
  }

  // Runs the policy through every layer; returns the prefix positions attended per layer.
  static std::vector<std::vector<int64_t>> Attended(KVSourcePolicy& policy, Setup& s,
                                                    const Data& d) {
    EXPECT_TRUE(policy.Begin(s.rc).ok());
    std::vector<int32_t> pos(kSuffix);
    for (int i = 0; i < kSuffix; ++i) pos[i] = static_cast<int32_t>(kPrefix + i);
    std::vector<std::vector<int64_t>> out;
    for (int l = 0; l < kLayers; ++l) {
      const KVSpan suffix{d.suffix_k[l].data(), nullptr, kSuffix, kPrefix};
      auto ctx = policy.PrefixKV(l, d.q[l].data(), kSuffix, pos.data(), suffix);
      EXPECT_TRUE(ctx.ok()) << ctx.status().ToString();
      std::vector<int64_t> positions;
      for (const KVSpan& sp : ctx->spans) {
        for (int64_t t = 0; t < sp.n_tokens; ++t) positions.push_back(sp.pos_begin + t);
      }
      out.push_back(std::move(positions));
      policy.Observe(l, *ctx, {});
    }
    (void)policy.End();
    return out;
  }
};

TEST_P(SelectionReference, H2OSelectsTheTopTokensOfTheReferenceMass) {
  const Data d = MakeData(31);
  auto s = Prepare(d, StoreLayout::LayerMajor(64));
  auto policy = MakeAsH2OLruPolicy();
  const auto attended = Attended(*policy, *s, d);
  for (int l = 0; l < kLayers; ++l) {
    const auto mass = ReferenceMass(d, l);
    ExpectSameUpToTies(attended[l], TopK(mass, Ceil(GetParam(), kPrefix)), mass,
                       "layer " + std::to_string(l));
  }
}

// IMPRESS's best case on this shape: probes are KV heads 0 and 1 (query heads 0-2 read both),
// each scored by all its query heads, so the voted set is the top k of the all-heads mass.
TEST_P(SelectionReference, ImpressVoteSelectsTheTopTokensOfTheReferenceMass) {
  const Data d = MakeData(32);
  auto s = Prepare(d, StoreLayout::Impress(64, 3));
  s->opts.impress_always_vote = true;
  auto policy = MakeImpressPolicy();
  const auto attended = Attended(*policy, *s, d);
  for (int l = 0; l < kLayers; ++l) {
    const auto mass = ReferenceMass(d, l);
    ExpectSameUpToTies(attended[l], TopK(mass, Ceil(GetParam(), kPrefix)), mass,
                       "layer " + std::to_string(l));
  }
}

// ContiguousKV: at each period's first layer, chunk score = the reference mass summed over the
// chunk's tokens; the first chunk and the last (and the one before a last chunk of under half a
// chunk) always, plus the ceil(r m) top-scoring others, for all layers of the period.
TEST_P(SelectionReference, ContiguousKVSelectsTheTopChunksOfTheReferenceMass) {
  const Data d = MakeData(33);
  const int c = 16, p = 2;
  auto s = Prepare(d, StoreLayout::PeriodMajor(c, p));
  auto policy = MakeContiguousKVPolicy();
  const auto attended = Attended(*policy, *s, d);
  const int64_t m = (kPrefix + c - 1) / c;
  const int64_t last_tokens = kPrefix - (m - 1) * c;
  for (int period = 0; period < kLayers / p; ++period) {
    const auto mass = ReferenceMass(d, period * p);
    std::vector<double> chunk(m, 0.0);
    for (int64_t t = 0; t < kPrefix; ++t) chunk[t / c] += mass[t];
    std::set<int64_t> forced = {0, m - 1};
    if (last_tokens * 2 < c) forced.insert(m - 2);
    // The budget buys ceil(r m) chunks besides the forced ones.
    std::vector<double> free_score = chunk;
    for (int64_t j : forced) free_score[j] = -1.0;
    const std::vector<int64_t> want = TopK(free_score, Ceil(GetParam(), m));
    std::vector<int64_t> got, got_free;
    for (int64_t t : attended[period * p]) {
      if (got.empty() || got.back() != t / c) got.push_back(t / c);
    }
    for (int64_t j : got) {
      if (!forced.count(j)) got_free.push_back(j);
    }
    for (int64_t j : forced) {
      EXPECT_TRUE(std::count(got.begin(), got.end(), j)) << "forced chunk " << j;
    }
    ExpectSameUpToTies(got_free, want, free_score, "period " + std::to_string(period));
    for (int l = period * p + 1; l < (period + 1) * p; ++l) {
      EXPECT_EQ(attended[l], attended[period * p]) << "one selection per period, layer " << l;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Budgets, SelectionReference, ::testing::Values(0.1, 0.25, 0.5),
                         [](const auto& info) {
                           return "r" + std::to_string(static_cast<int>(info.param * 100));
                         });

}  // namespace
}  // namespace ckv
