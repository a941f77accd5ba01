// StoreContext: what the server stores after each request. The parent's KV is read back and
// only the rest computed; the stored KV must equal a plain prefill's, and a damaged parent must
// cost a recompute, never wrong KV.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "ckv/model.h"
#include "ckv/prefix_store.h"
#include "ckv/reprefill.h"
#include "model_store_fixture.h"
#include "test_util.h"

namespace ckv {
namespace {

class StoreContextTest : public test::BundledModelAndStore {
 protected:
  StoreContextTest() : BundledModelAndStore("store-context") {}
  std::span<const int32_t> Ids(int64_t n) const { return std::span(ids_).first(n); }

  // Every stored row of `id` against a plain prefill of its tokens (bf16 KV).
  void ExpectStoredEqualsPrefill(const std::string& id, int64_t n) {
    KVCache kv = model_->NewCache(KVPrecision::kBF16, n);
    ASSERT_TRUE(model_->Forward(Ids(n), kv, nullptr).ok());
    auto h = store_->OpenPrefix(id);
    ASSERT_TRUE(h.ok()) << h.status().ToString();
    const int c = (*h)->chunk_tokens(), kv_dim = (*h)->kv_dim();
    std::vector<uint16_t> k(static_cast<size_t>(c) * kv_dim), v(k.size());
    for (int l = 0; l < model_->config().num_layers; ++l) {
      for (int64_t j = 0; j * c < n; ++j) {
        ASSERT_TRUE((*h)->ReadLayerChunk(l, j, k.data(), v.data()).ok());
        const int64_t rows = std::min<int64_t>(c, n - j * c);
        const auto* ek = static_cast<const uint16_t*>(kv.k(l)) + j * c * kv_dim;
        const auto* ev = static_cast<const uint16_t*>(kv.v(l)) + j * c * kv_dim;
        ASSERT_EQ(std::memcmp(k.data(), ek, rows * kv_dim * 2), 0)
            << "layer " << l << " chunk " << j;
        ASSERT_EQ(std::memcmp(v.data(), ev, rows * kv_dim * 2), 0)
            << "layer " << l << " chunk " << j;
      }
    }
  }
};

TEST_F(StoreContextTest, ExtensionReusesTheParentAndEqualsAPlainPrefill) {
  const StoreLayout layout = StoreLayout::PeriodMajor(16, 8);
  auto first = StoreContext(*model_, *store_, layout, Ids(150));
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(first->reused_tokens, 0);
  EXPECT_EQ(first->computed_tokens, 150);
  StoreContextOptions opts;
  opts.piece_tokens = 37;  // several pieces, none aligned to a chunk
  int pieces = 0;
  opts.run_piece = [&](const std::function<Status()>& f) {
    ++pieces;
    return f();
  };
  auto second = StoreContext(*model_, *store_, layout, Ids(301), opts);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_EQ(second->reused_tokens, 150);
  EXPECT_EQ(second->computed_tokens, 151);
  EXPECT_EQ(pieces, 4);  // 37, 37, 37, then 37 + the last 3 (a short piece is folded in)
  EXPECT_EQ(second->info.parent_id, first->info.id);
  EXPECT_LT(second->info.bytes, second->info.total_bytes);  // the parent's full chunks shared
  ExpectStoredEqualsPrefill(second->info.id, 301);
  // Storing the same context again computes nothing.
  auto again = StoreContext(*model_, *store_, layout, Ids(301));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->computed_tokens, 0);
  EXPECT_EQ(again->info.id, second->info.id);
}

// A server's two prefixes of a request (the prompt's stable part, the whole context) come from
// one computation: the first is stored as its own entry, the whole shares its chunks.
TEST_F(StoreContextTest, AlsoStoreFirstStoresBothEntriesFromOneComputation) {
  const StoreLayout layout = StoreLayout::PeriodMajor(16, 8);
  StoreContextOptions opts;
  opts.also_store_first = 150;
  auto both = StoreContext(*model_, *store_, layout, Ids(301), opts);
  ASSERT_TRUE(both.ok()) << both.status().ToString();
  EXPECT_EQ(both->computed_tokens, 301);
  ASSERT_TRUE(both->first_info.has_value());
  EXPECT_EQ(both->first_info->n_tokens, 150);
  EXPECT_EQ(both->info.parent_id, both->first_info->id);
  EXPECT_EQ(store_->size(), 2u);
  ExpectStoredEqualsPrefill(both->first_info->id, 150);
  ExpectStoredEqualsPrefill(both->info.id, 301);
  // A longer context: the first entry exists (not stored again), the parent is read back.
  opts.also_store_first = 301;
  auto longer = StoreContext(*model_, *store_, layout, Ids(340), opts);
  ASSERT_TRUE(longer.ok()) << longer.status().ToString();
  EXPECT_FALSE(longer->first_info.has_value());
  EXPECT_EQ(longer->reused_tokens, 301);
  EXPECT_EQ(store_->size(), 3u);
}

// Pieces of a few layers (what a server runs, so a request waits for a few layers of a store,
// not all of them) compute the same KV.
TEST_F(StoreContextTest, PiecesOfLayersComputeWhatAPrefillComputes) {
  StoreContextOptions opts;
  opts.piece_tokens = 100;
  opts.layers_per_piece = 2;  // the bundled model's 5 layers: 2, 2, 1
  int pieces = 0;
  opts.run_piece = [&](const std::function<Status()>& f) {
    ++pieces;
    return f();
  };
  auto r = StoreContext(*model_, *store_, StoreLayout::PeriodMajor(16, 8), Ids(250), opts);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->computed_tokens, 250);
  EXPECT_EQ(pieces, 3 * 3);  // 100, 100, 50 tokens x 3 layer groups
  ExpectStoredEqualsPrefill(r->info.id, 250);
  // A failing piece mid-way stores nothing.
  opts.run_piece = [&](const std::function<Status()>& f) {
    return ++pieces == 12 ? Status::Internal("injected") : f();
  };
  auto failed = StoreContext(*model_, *store_, StoreLayout::PeriodMajor(16, 8), Ids(280), opts);
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(store_->size(), 1u);
}

TEST_F(StoreContextTest, ADamagedParentIsQuarantinedAndTheContextComputedInFull) {
  const StoreLayout layout = StoreLayout::PeriodMajor(16, 8);
  auto first = StoreContext(*model_, *store_, layout, Ids(160));
  ASSERT_TRUE(first.ok());
  // Flip a byte in the parent's K/V data.
  auto h = store_->OpenPrefix(first->info.id);
  ASSERT_TRUE(h.ok());
  const std::string seg = (*h)->files()[0].path;
  h->reset();
  {
    std::fstream f(seg, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    char b = 0;
    f.read(&b, 1);
    f.seekp(100);
    b = static_cast<char>(b ^ 0x40);
    f.write(&b, 1);
  }
  auto second = StoreContext(*model_, *store_, layout, Ids(240));
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_EQ(second->reused_tokens, 0);
  EXPECT_EQ(second->computed_tokens, 240);
  EXPECT_FALSE(store_->Info(first->info.id).ok());  // quarantined
  ExpectStoredEqualsPrefill(second->info.id, 240);
}

TEST_F(StoreContextTest, AFailedPieceFailsTheStoreAndStoresNothing) {
  StoreContextOptions opts;
  opts.run_piece = [](const std::function<Status()>&) { return Status::Internal("injected"); };
  auto r = StoreContext(*model_, *store_, StoreLayout::PeriodMajor(16, 8), Ids(100), opts);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(store_->size(), 0u);
}

}  // namespace
}  // namespace ckv
