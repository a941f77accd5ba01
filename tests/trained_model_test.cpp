// The shipped long-context model (models/ckv-long-8m) against the PyTorch implementation it
// was trained with (tests/data/ckv-long-8m/golden.json, tools/train/golden.py): its tokenizer,
// last-position logits, and per-position NLL over a 2K-token held-out window.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <numeric>

#include "ckv/model.h"
#include "ckv/perplexity.h"
#include "test_util.h"

namespace ckv {
namespace {

using nlohmann::json;

class TrainedModel : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto m = Model::Load(test::SourceDir() + "/models/ckv-long-8m");
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    model_ = std::move(m).value().release();
    golden_ = new json(
        json::parse(test::ReadFileOrDie(test::TestDataDir() + "/ckv-long-8m/golden.json")));
  }
  static void TearDownTestSuite() {
    delete model_;
    delete golden_;
  }
  static Model* model_;
  static json* golden_;
};
Model* TrainedModel::model_ = nullptr;
json* TrainedModel::golden_ = nullptr;

TEST_F(TrainedModel, TokenizerAndLogitsMatchTheTrainingImplementation) {
  const int vocab = model_->config().vocab_size;
  for (const json& p : (*golden_)["prompts"]) {
    const std::string prompt = p["prompt"];
    auto ids = model_->tokenizer()->Encode(prompt, true);
    ASSERT_TRUE(ids.ok());
    EXPECT_EQ(*ids, p["ids"].get<std::vector<int32_t>>()) << prompt;
    KVCache kv = model_->NewCache(KVPrecision::kF32, static_cast<int64_t>(ids->size()));
    std::vector<float> logits;
    ASSERT_TRUE(model_->Forward(*ids, kv, &logits).ok());
    const auto ref = p["logits"].get<std::vector<double>>();
    ASSERT_EQ(logits.size(), static_cast<size_t>(vocab));
    double max_diff = 0;
    for (int i = 0; i < vocab; ++i) max_diff = std::max(max_diff, std::abs(logits[i] - ref[i]));
    EXPECT_LT(max_diff, 2e-3) << prompt;
    if (p["top1_top2_gap"].get<double>() > 1e-2) {
      const auto top = std::max_element(logits.begin(), logits.end()) - logits.begin();
      EXPECT_EQ(top, p["argmax"].get<int64_t>()) << prompt;
    }
  }
}

// Positions up to 2K: RoPE (theta 1e5), GQA and the KV cache at the lengths quality is measured.
TEST_F(TrainedModel, PerPositionNllOfAHeldOutWindowMatches) {
  const json& w = (*golden_)["window"];
  const auto ref = w["nll"].get<std::vector<double>>();
  PerplexityOptions o;
  o.context = w["tokens"].get<int64_t>();
  o.max_windows = 1;
  auto r = EvaluatePerplexity(
      *model_,
      test::ReadFileOrDie(test::TextDataDir() + "/heldout/" + w["text"].get<std::string>()), o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->tokens_scored, static_cast<int64_t>(ref.size()));
  for (const PositionBucket& b : r->buckets) {
    const double want = std::accumulate(ref.begin() + (b.begin == 0 ? 0 : b.begin - 1),
                                        ref.begin() + (b.end - 1), 0.0) /
                        static_cast<double>(b.tokens);
    EXPECT_NEAR(b.mean_nll, want, 1e-3) << b.begin << "-" << b.end;
  }
}

}  // namespace
}  // namespace ckv
