// Sequences of a ReprefillEngine interleaved the way a continuous-batching scheduler drives
// them: prefill in pieces of layers while others decode, several decoding in one batch,
// cancellation, one prefill at a time on the I/O path, memory within its bound. Every
// interleaving must produce what each request produces alone.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "ckv/model.h"
#include "ckv/prefix_store.h"
#include "ckv/reprefill.h"
#include "test_util.h"

namespace ckv {
namespace {

class BatchDecodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = test::LoadBundledModel();
    ASSERT_NE(model_, nullptr);
    const std::string text = test::ReadFileOrDie(test::TextDataDir() + "/tinystories.txt");
    auto ids = model_->tokenizer()->Encode(text, true);
    ASSERT_TRUE(ids.ok());
    all_ids_ = *ids;
    StoreOptions so;
    so.sync = false;
    auto s = PrefixStore::Open(test::MakeTempDir("batch"), so);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
    ASSERT_TRUE(StorePrefix(*model_, *store_, kLayout, Ids(0, 192)).ok());
    ASSERT_TRUE(StorePrefix(*model_, *store_, kLayout, Ids(200, 160)).ok());
    ReprefillEngine::Config ec;
    ec.layout = kLayout;
    ec.cache_bytes = 8 << 20;
    auto e = ReprefillEngine::Create(*model_, *store_, ec);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    engine_ = std::move(e).value();
  }

  std::vector<int32_t> Ids(int64_t from, int64_t n) const {
    return {all_ids_.begin() + from, all_ids_.begin() + from + n};
  }

  // Three requests: two Re-Prefilled from different stored prefixes (different budgets and
  // systems), one with nothing stored (a plain prefill).
  struct Request {
    std::vector<int32_t> tokens;
    ReprefillOptions opts;
  };
  std::vector<Request> Requests() const {
    std::vector<Request> r(3);
    r[0].tokens = Ids(0, 210);
    r[0].opts.budget = 0.5;
    r[1].tokens = Ids(200, 175);
    r[1].opts.budget = 1.0;
    r[1].opts.system = "as-lru";
    r[2].tokens = Ids(400, 90);
    r[2].opts.system = "recompute";
    for (auto& q : r) q.opts.max_tokens = 10;
    r[2].opts.max_tokens = 14;
    // Two rows sample (each with its own seed; a batch draws its rows in parallel), one is
    // greedy.
    r[0].opts.sampling = {0.9f, 1.0f, 11};
    r[1].opts.sampling = {1.0f, 0.8f, 12};
    return r;
  }

  const StoreLayout kLayout = StoreLayout::PeriodMajor(16, 8);
  std::unique_ptr<Model> model_;
  std::vector<int32_t> all_ids_;
  std::unique_ptr<PrefixStore> store_;
  std::unique_ptr<ReprefillEngine> engine_;
};

TEST_F(BatchDecodeTest, ABatchDecodesWhatEachSequenceDecodesAlone) {
  std::vector<std::vector<int32_t>> alone;
  for (const auto& r : Requests()) {
    auto res = engine_->Run(r.tokens, r.opts);
    ASSERT_TRUE(res.ok()) << res.status().ToString();
    alone.push_back(res->generated_ids);
  }
  // The same requests, the second admitted in pieces of 3 layers while the first decodes, the
  // third prefilled at once; then all decode in one batch until each has its tokens.
  std::vector<std::unique_ptr<ReprefillSequence>> seqs;
  std::vector<ReprefillSequence*> running;
  for (const auto& r : Requests()) {
    auto s = engine_->Begin(r.tokens, r.opts);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    seqs.push_back(std::move(s).value());
  }
  ASSERT_TRUE(engine_->Prefill(*seqs[0]).ok());
  running.push_back(seqs[0].get());
  int steps_during_prefill = 0;
  while (seqs[1]->phase() == ReprefillSequence::Phase::kPrefill) {
    ASSERT_TRUE(engine_->Prefill(*seqs[1], 3).ok());
    ASSERT_TRUE(engine_->DecodeStep(running).ok());
    ++steps_during_prefill;
  }
  // Pieces of 3 layers: as many decode steps as pieces.
  EXPECT_EQ(steps_during_prefill, (model_->config().num_layers + 2) / 3);
  EXPECT_GT(steps_during_prefill, 1);
  running.push_back(seqs[1].get());
  ASSERT_TRUE(engine_->Prefill(*seqs[2]).ok());
  running.push_back(seqs[2].get());
  for (int guard = 0; guard < 100; ++guard) {
    bool all = true;
    for (auto* s : running) all = all && s->finished();
    if (all) break;
    ASSERT_TRUE(engine_->DecodeStep(running).ok());
  }
  for (size_t i = 0; i < seqs.size(); ++i) {
    ASSERT_TRUE(seqs[i]->finished());
    EXPECT_EQ(seqs[i]->result().generated_ids, alone[i]) << "request " << i;
    EXPECT_FALSE(seqs[i]->result().stats.cancelled);
  }
  EXPECT_FALSE(seqs[0]->result().stats.prefix_id.empty());
  EXPECT_FALSE(seqs[1]->result().stats.prefix_id.empty());
  EXPECT_TRUE(seqs[2]->result().stats.prefix_id.empty());
}

TEST_F(BatchDecodeTest, OnlyOnePrefillHoldsTheIoPathAndAReleasedOneFreesIt) {
  auto reqs = Requests();
  auto a = engine_->Begin(reqs[0].tokens, reqs[0].opts);
  auto b = engine_->Begin(reqs[1].tokens, reqs[1].opts);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(engine_->Prefill(**a, 1).ok());
  EXPECT_EQ(engine_->Prefill(**b, 1).code(), StatusCode::kUnavailable);
  // Destroying the first mid-prefill ends its reads and frees the path.
  a->reset();
  ASSERT_TRUE(engine_->Prefill(**b).ok());
  EXPECT_NE((*b)->phase(), ReprefillSequence::Phase::kPrefill);
}

TEST_F(BatchDecodeTest, CancelEndsASequenceAtItsNextStepKeepingItsTokens) {
  auto reqs = Requests();
  auto a = engine_->Begin(reqs[0].tokens, reqs[0].opts);
  auto b = engine_->Begin(reqs[2].tokens, reqs[2].opts);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(engine_->Prefill(**a).ok());
  ASSERT_TRUE(engine_->Prefill(**b).ok());
  std::vector<ReprefillSequence*> running = {a->get(), b->get()};
  ASSERT_TRUE(engine_->DecodeStep(running).ok());
  (*a)->Cancel();
  ASSERT_TRUE(engine_->DecodeStep(running).ok());
  EXPECT_TRUE((*a)->finished());
  EXPECT_TRUE((*a)->result().stats.cancelled);
  EXPECT_EQ((*a)->result().generated_ids.size(), 2u);  // the first token and one step
  EXPECT_EQ((*a)->memory_bytes(), 0);                  // its KV is freed
  EXPECT_FALSE((*b)->finished());
  EXPECT_EQ((*b)->result().generated_ids.size(), 3u);

  // Cancelled during its prefill: it finishes at the next Prefill call and the I/O path is
  // free for the next request.
  auto c = engine_->Begin(reqs[1].tokens, reqs[1].opts);
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(engine_->Prefill(**c, 1).ok());
  (*c)->Cancel();
  ASSERT_TRUE(engine_->Prefill(**c, 1).ok());
  EXPECT_TRUE((*c)->finished());
  EXPECT_TRUE((*c)->result().stats.cancelled);
  EXPECT_TRUE((*c)->result().generated_ids.empty());
  auto d = engine_->Begin(reqs[0].tokens, reqs[0].opts);
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(engine_->Prefill(**d).ok());
}

TEST_F(BatchDecodeTest, MemoryHeldStaysWithinTheBoundSchedulersAdmitAgainst) {
  for (const auto& r : Requests()) {
    auto s = engine_->Begin(r.tokens, r.opts);
    ASSERT_TRUE(s.ok());
    ASSERT_TRUE(engine_->Prefill(**s).ok());
    const int64_t bound = ReprefillEngine::SequenceKVBytesBound(
        model_->config(), static_cast<int64_t>(r.tokens.size()), r.opts.max_tokens);
    EXPECT_GT((*s)->memory_bytes(), 0);
    EXPECT_LE((*s)->memory_bytes(), bound);
  }
}

TEST_F(BatchDecodeTest, SequencesOfAnotherEngineAreRefused) {
  ReprefillEngine::Config ec;
  ec.layout = kLayout;
  auto other = ReprefillEngine::Create(*model_, *store_, ec);
  ASSERT_TRUE(other.ok());
  auto reqs = Requests();
  auto s = (*other)->Begin(reqs[2].tokens, reqs[2].opts);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(engine_->Prefill(**s).code(), StatusCode::kInvalidArgument);
  ReprefillSequence* one[1] = {s->get()};
  EXPECT_EQ(engine_->DecodeStep(one).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ckv
