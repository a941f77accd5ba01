// A request whose attention was exact keeps its KV (ReprefillResult::exact_kv) and storing its
// context takes those rows instead of computing them again: the rows must be a plain prefill's
// (the prompt's bit for bit; the generated tokens' as decode computed them, within bf16
// rounding), only exact requests may hand them over, and StoreContext must store them as given.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "ckv/model.h"
#include "ckv/prefix_store.h"
#include "ckv/reprefill.h"
#include "model_store_fixture.h"
#include "test_util.h"

namespace ckv {
namespace {

float Bf16ToFloat(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

class ExactContextKVTest : public test::BundledModelAndStore {
 protected:
  ExactContextKVTest() : BundledModelAndStore("exact-kv") {}
  void SetUp() override {
    BundledModelAndStore::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_TRUE(StorePrefix(*model_, *store_, kLayout, Ids(192)).ok());
    ReprefillEngine::Config ec;
    ec.layout = kLayout;
    auto e = ReprefillEngine::Create(*model_, *store_, ec);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    engine_ = std::move(e).value();
  }
  std::vector<int32_t> Ids(int64_t n) const { return {ids_.begin(), ids_.begin() + n}; }

  ReprefillResult Run(const std::string& system, double budget, int max_tokens, bool keep = true) {
    ReprefillOptions o;
    EXPECT_TRUE(ApplySystemName(system, o).ok());
    o.budget = budget;
    o.max_tokens = max_tokens;
    o.keep_exact_kv = keep;
    auto r = engine_->Run(Ids(230), o);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(r).value() : ReprefillResult{};
  }

  // A plain prefill of `tokens` (bf16 KV): what StoreContext would compute.
  KVCache Prefill(std::span<const int32_t> tokens) {
    KVCache kv = model_->NewCache(KVPrecision::kBF16, static_cast<int64_t>(tokens.size()));
    EXPECT_TRUE(model_->Forward(tokens, kv, nullptr).ok());
    return kv;
  }

  const StoreLayout kLayout = StoreLayout::PeriodMajor(16, 8);
  std::unique_ptr<ReprefillEngine> engine_;
};

TEST_F(ExactContextKVTest, AFullLoadKeepsThePrefillsKVAndItsDecodedRows) {
  const ReprefillResult r = Run("as-lru", 1.0, 8);
  ASSERT_EQ(r.stats.prefix_tokens, 192);  // Re-Prefilled from the stored prefix
  ASSERT_NE(r.exact_kv, nullptr);
  const ExactContextKV& e = *r.exact_kv;
  // The prompt, then the generated tokens that went through the model (all but the last).
  ASSERT_EQ(r.generated_ids.size(), 8u);
  std::vector<int32_t> expected = Ids(230);
  expected.insert(expected.end(), r.generated_ids.begin(), r.generated_ids.end() - 1);
  ASSERT_EQ(e.tokens, expected);
  const int64_t n = static_cast<int64_t>(e.tokens.size());
  const int kv_dim = model_->config().kv_dim();
  KVCache ref = Prefill(e.tokens);
  for (int l = 0; l < model_->config().num_layers; ++l) {
    ASSERT_EQ(e.k[l].size(), static_cast<size_t>(n) * kv_dim);
    const auto* rk = static_cast<const uint16_t*>(ref.k(l));
    const auto* rv = static_cast<const uint16_t*>(ref.v(l));
    // Stored prefix and Re-Prefilled suffix: exact attention, the prefill's kernels.
    ASSERT_EQ(std::memcmp(e.k[l].data(), rk, 230 * kv_dim * 2), 0) << "layer " << l;
    ASSERT_EQ(std::memcmp(e.v[l].data(), rv, 230 * kv_dim * 2), 0) << "layer " << l;
    // Decoded rows: the same attention through the decode kernels (bf16 rounding apart).
    for (int64_t i = 230 * kv_dim; i < n * kv_dim; ++i) {
      const float a = Bf16ToFloat(e.k[l][i]), b = Bf16ToFloat(rk[i]);
      ASSERT_NEAR(a, b, 0.02f + 0.02f * std::fabs(b)) << "layer " << l << " element " << i;
      const float c = Bf16ToFloat(e.v[l][i]), d = Bf16ToFloat(rv[i]);
      ASSERT_NEAR(c, d, 0.02f + 0.02f * std::fabs(d)) << "layer " << l << " element " << i;
    }
  }
}

TEST_F(ExactContextKVTest, OnlyExactRequestsKeepTheirKV) {
  // A selection is not exact: ContiguousKV and AS+H2O below 1.0.
  EXPECT_EQ(Run("contiguouskv", 0.5, 4).exact_kv, nullptr);
  EXPECT_EQ(Run("as-h2o-lru", 0.5, 4).exact_kv, nullptr);
  // Every chunk selected is a full load; no stored prefix is a plain prefill.
  EXPECT_NE(Run("contiguouskv", 1.0, 4).exact_kv, nullptr);
  const ReprefillResult plain = Run("recompute", 1.0, 4);
  ASSERT_NE(plain.exact_kv, nullptr);
  EXPECT_EQ(plain.exact_kv->tokens.size(), 230u + 3);
  // Only when asked; a first token only (nothing decoded) still has the prompt's rows.
  EXPECT_EQ(Run("as-lru", 1.0, 4, /*keep=*/false).exact_kv, nullptr);
  const ReprefillResult one = Run("as-lru", 1.0, 1);
  ASSERT_NE(one.exact_kv, nullptr);
  EXPECT_EQ(one.exact_kv->tokens, Ids(230));
}

TEST_F(ExactContextKVTest, ACancelledRequestKeepsNothing) {
  ReprefillOptions o;
  ASSERT_TRUE(ApplySystemName("as-lru", o).ok());
  o.budget = 1.0;
  o.max_tokens = 20;
  o.keep_exact_kv = true;
  auto seq = engine_->Begin(Ids(230), o);
  ASSERT_TRUE(seq.ok());
  ASSERT_TRUE(engine_->Prefill(**seq).ok());
  ReprefillSequence* batch[] = {seq->get()};
  ASSERT_TRUE(engine_->DecodeStep(batch).ok());
  (*seq)->Cancel();
  ASSERT_TRUE(engine_->DecodeStep(batch).ok());
  ASSERT_TRUE((*seq)->finished());
  EXPECT_EQ((*seq)->result().exact_kv, nullptr);
}

TEST_F(ExactContextKVTest, StoreContextStoresTheGivenRowsAndComputesOnlyTheRest) {
  const ReprefillResult r = Run("as-lru", 1.0, 6);
  ASSERT_NE(r.exact_kv, nullptr);
  const ExactContextKV& e = *r.exact_kv;
  const int64_t m = static_cast<int64_t>(e.tokens.size());  // 230 + 5
  // The context as a server stores it: the given tokens, then 20 more (say, a template's
  // end of turn and a next message).
  std::vector<int32_t> context = e.tokens;
  context.insert(context.end(), ids_.begin() + 300, ids_.begin() + 320);
  StoreContextOptions opts;
  opts.exact_kv = &e;
  int pieces = 0;
  opts.run_piece = [&](const std::function<Status()>& f) {
    ++pieces;
    return f();
  };
  auto stored = StoreContext(*model_, *store_, kLayout, context, opts);
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  // The stored parent (192 tokens) is not read: the given rows cover more.
  EXPECT_EQ(stored->reused_tokens, 0);
  EXPECT_EQ(stored->given_tokens, m);
  EXPECT_EQ(stored->computed_tokens, 20);
  EXPECT_EQ(pieces, 1);
  // Stored: the given rows as they are, then the rest computed attending to them.
  KVCache expect = model_->NewCache(KVPrecision::kBF16, static_cast<int64_t>(context.size()));
  const int kv_dim = model_->config().kv_dim();
  for (int l = 0; l < model_->config().num_layers; ++l) {
    std::memcpy(expect.k(l), e.k[l].data(), m * kv_dim * 2);
    std::memcpy(expect.v(l), e.v[l].data(), m * kv_dim * 2);
  }
  expect.Advance(m);
  ASSERT_TRUE(model_->Forward(std::span(context).subspan(m), expect, nullptr).ok());
  auto h = store_->OpenPrefix(stored->info.id);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  const int c = (*h)->chunk_tokens();
  const int64_t n = static_cast<int64_t>(context.size());
  std::vector<uint16_t> k(static_cast<size_t>(c) * kv_dim), v(k.size());
  for (int l = 0; l < model_->config().num_layers; ++l) {
    for (int64_t j = 0; j * c < n; ++j) {
      ASSERT_TRUE((*h)->ReadLayerChunk(l, j, k.data(), v.data()).ok());
      const int64_t rows = std::min<int64_t>(c, n - j * c);
      const auto* ek = static_cast<const uint16_t*>(expect.k(l)) + j * c * kv_dim;
      const auto* ev = static_cast<const uint16_t*>(expect.v(l)) + j * c * kv_dim;
      ASSERT_EQ(std::memcmp(k.data(), ek, rows * kv_dim * 2), 0) << "layer " << l << " " << j;
      ASSERT_EQ(std::memcmp(v.data(), ev, rows * kv_dim * 2), 0) << "layer " << l << " " << j;
    }
  }
  // A context the given tokens are all of is stored with no compute at all; one that leaves
  // them early takes only the rows they share.
  pieces = 0;
  auto whole = StoreContext(*model_, *store_, kLayout, std::span(e.tokens).first(m - 2), opts);
  ASSERT_TRUE(whole.ok()) << whole.status().ToString();
  EXPECT_EQ(whole->given_tokens, m - 2);
  EXPECT_EQ(whole->computed_tokens, 0);
  EXPECT_EQ(pieces, 0);
  std::vector<int32_t> other = Ids(210);
  other.insert(other.end(), ids_.begin() + 400, ids_.begin() + 430);
  auto diverged = StoreContext(*model_, *store_, kLayout, other, opts);
  ASSERT_TRUE(diverged.ok()) << diverged.status().ToString();
  EXPECT_EQ(diverged->given_tokens, 210);
  EXPECT_EQ(diverged->computed_tokens, 30);
}

TEST_F(ExactContextKVTest, GivenKVOfAnotherShapeIsRefused) {
  ExactContextKV bad;
  bad.tokens = Ids(100);
  bad.k.assign(model_->config().num_layers, std::vector<uint16_t>(100 * 3));
  bad.v = bad.k;
  StoreContextOptions opts;
  opts.exact_kv = &bad;
  auto r = StoreContext(*model_, *store_, kLayout, Ids(120), opts);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().ToString().find("exact_kv"), std::string::npos) << r.status().ToString();
  EXPECT_EQ(store_->size(), 1u);  // the prefix SetUp stored, nothing more
}

}  // namespace
}  // namespace ckv
