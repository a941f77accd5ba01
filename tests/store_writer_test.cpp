// The background store writer with a request's exact KV: both prefixes are stored from the
// given rows (nothing computed), a context missing only a short tail is stored without it, a
// long tail is computed, and KV beyond the queue's bound is not held (that store computes).
#include "server/store_writer.h"

#include <gtest/gtest.h>

#include "ckv/model.h"
#include "ckv/prefix_store.h"
#include "ckv/reprefill.h"
#include "model_store_fixture.h"
#include "test_util.h"

namespace ckv::server {
namespace {

class StoreWriterTest : public test::BundledModelAndStore {
 protected:
  StoreWriterTest() : BundledModelAndStore("store-writer") {}
  void SetUp() override {
    BundledModelAndStore::SetUp();
    if (HasFatalFailure()) return;
    ReprefillEngine::Config ec;
    ec.layout = kLayout;
    auto e = ReprefillEngine::Create(*model_, *store_, ec);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    engine_ = std::move(e).value();
  }

  // A plain prefill of the first 200 tokens generating 8: exact KV of 207 tokens.
  std::shared_ptr<const ExactContextKV> ExactKV() {
    ReprefillOptions o;
    o.system = "recompute";
    o.max_tokens = 8;
    o.keep_exact_kv = true;
    auto r = engine_->Run(std::span(ids_).first(200), o);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok()) return nullptr;
    EXPECT_NE(r->exact_kv, nullptr);
    return r->exact_kv;
  }

  // Stores `context` (stable prefix: the first 200 tokens) through a writer bounded at
  // `kv_bound` bytes of queued KV; returns the writer's metrics.
  void StoreThroughWriter(std::vector<int32_t> context, std::shared_ptr<const ExactContextKV> kv,
                          int64_t kv_bound) {
    StoreWriter::Config wc;
    wc.layout = kLayout;
    wc.min_tokens = 16;
    wc.max_queue_kv_bytes = kv_bound;
    ComputeGate gate;
    StoreWriter writer(*model_, *store_, wc, gate, metrics_, nullptr);
    EXPECT_EQ(writer.Enqueue(std::move(context), 200, std::move(kv)), "queued");
    writer.WaitIdle();
  }

  const StoreLayout kLayout = StoreLayout::PeriodMajor(16, 8);
  std::unique_ptr<ReprefillEngine> engine_;
  Metrics metrics_;
};

TEST_F(StoreWriterTest, ExactKVIsStoredWithoutComputeAndAShortTailIsLeftOut) {
  auto kv = ExactKV();
  ASSERT_NE(kv, nullptr);
  // The context as a server stores it: the 207 tokens, then 3 more (an end-of-turn text).
  std::vector<int32_t> context = kv->tokens;
  context.insert(context.end(), {5, 6, 7});
  StoreThroughWriter(context, kv, int64_t{1} << 30);
  EXPECT_EQ(metrics_.store_tokens_computed.load(), 0);
  EXPECT_EQ(metrics_.store_tokens_read.load(), 0);
  EXPECT_EQ(metrics_.store_tokens_given.load(), 207);
  // Stored: the stable prefix and the context without its 3-token tail.
  EXPECT_EQ(store_->size(), 2u);
  auto hit = store_->FindLongestPrefix(model_->fingerprint(), kLayout, context);
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->n_tokens, 207);
}

TEST_F(StoreWriterTest, ALongTailIsComputedFromTheGivenRows) {
  auto kv = ExactKV();
  ASSERT_NE(kv, nullptr);
  std::vector<int32_t> context = kv->tokens;
  context.insert(context.end(), ids_.begin() + 300, ids_.begin() + 340);  // 40 more
  StoreThroughWriter(context, kv, int64_t{1} << 30);
  EXPECT_EQ(metrics_.store_tokens_computed.load(), 40);
  EXPECT_EQ(metrics_.store_tokens_given.load(), 207);
  auto hit = store_->FindLongestPrefix(model_->fingerprint(), kLayout, context);
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->n_tokens, static_cast<int64_t>(context.size()));
}

TEST_F(StoreWriterTest, KVBeyondTheQueuesBoundIsNotHeldAndThatStoreComputes) {
  auto kv = ExactKV();
  ASSERT_NE(kv, nullptr);
  std::vector<int32_t> context = kv->tokens;
  StoreThroughWriter(context, kv, kv->bytes() - 1);
  EXPECT_EQ(metrics_.store_tokens_given.load(), 0);
  // Computed in full, once for both entries: nothing was stored to read back.
  EXPECT_EQ(metrics_.store_tokens_computed.load(), 207);
  EXPECT_EQ(metrics_.store_tokens_read.load(), 0);
  EXPECT_EQ(store_->size(), 2u);  // the stable prefix and the context
}

}  // namespace
}  // namespace ckv::server
