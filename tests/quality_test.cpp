// ckv eval quality across systems: every system on its own layout, full attention at budget 1,
// and the attended fractions each system's selection rule implies.
#include "ckv/quality.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "test_util.h"

namespace ckv {
namespace {

class QualityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto m = Model::Load(test::BundledModelDir());
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    model_ = std::move(m).value().release();
    text_ = test::ReadFileOrDie(test::TextDataDir() + "/pride_and_prejudice.txt").substr(0, 40000);
  }
  static void TearDownTestSuite() { delete model_; }
  QualityOptions Options() const {
    QualityOptions o;
    o.prefix_tokens = {256};
    o.suffix_tokens = {8};
    o.windows = 2;
    o.store_dir = test::MakeTempDir("quality");
    return o;
  }
  // The pooled row; a missing one fails the test and yields a row no expectation accepts.
  static QualityRow Find(const std::vector<QualityRow>& rows, const std::string& system,
                         double budget) {
    for (const auto& r : rows)
      if (r.system == system && r.budget == budget && r.prefix_tokens == 0) return r;
    ADD_FAILURE() << "no pooled row for " << system << " at " << budget;
    QualityRow missing;
    missing.windows = -1;
    missing.top1_agreement = missing.mean_kl = missing.attended_fraction = -1;
    missing.probe_vote_fraction = -1;
    missing.adjacent_overlap = -2;
    return missing;
  }
  static Model* model_;
  static std::string text_;
};
Model* QualityTest::model_ = nullptr;
std::string QualityTest::text_;

TEST_F(QualityTest, EverySystemAtBudgetOneIsFullAttention) {
  QualityOptions o = Options();
  o.systems = {"contiguouskv", "contiguouskv-summaries", "impress", "as-h2o-lru", "as-lru"};
  o.budgets = {1.0};
  auto rows = EvaluateQuality(*model_, text_, o);
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  for (const std::string& s : o.systems) {
    const QualityRow r = Find(*rows, s, 1.0);
    EXPECT_EQ(r.windows, 2) << s;
    EXPECT_EQ(r.top1_agreement, 1.0) << s;
    EXPECT_LT(std::abs(r.mean_kl), 1e-9) << s;
    EXPECT_DOUBLE_EQ(r.mean_nll, r.full_mean_nll) << s;
    EXPECT_DOUBLE_EQ(r.attended_fraction, 1.0) << s;
  }
}

// The speculation hit rate: defined for chunk selections with more than one period below
// budget 1, and then a share; one period (p = all 5 layers) has nothing to speculate on.
TEST_F(QualityTest, AdjacentPeriodOverlapIsDefinedOnlyWhereSpeculationIs) {
  QualityOptions o = Options();
  o.systems = {"contiguouskv", "random", "as-h2o-lru"};
  o.budgets = {0.25, 1.0};
  o.period = 1;
  auto rows = EvaluateQuality(*model_, text_, o);
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  for (const char* s : {"contiguouskv", "random"}) {
    const double overlap = Find(*rows, s, 0.25).adjacent_overlap;
    EXPECT_GE(overlap, 0.0) << s;
    EXPECT_LE(overlap, 1.0) << s;
    EXPECT_EQ(Find(*rows, s, 1.0).adjacent_overlap, -1.0) << s;
  }
  EXPECT_EQ(Find(*rows, "as-h2o-lru", 0.25).adjacent_overlap, -1.0);
  o.period = 5;
  o.systems = {"contiguouskv"};
  o.budgets = {0.25};
  auto one = EvaluateQuality(*model_, text_, o);
  ASSERT_TRUE(one.ok()) << one.status().ToString();
  EXPECT_EQ(Find(*one, "contiguouskv", 0.25).adjacent_overlap, -1.0);
}

TEST_F(QualityTest, AttendedFractionsFollowEachSelectionRule) {
  QualityOptions o = Options();
  o.systems = {"contiguouskv", "impress", "impress-vote", "as-h2o-lru", "as-lru"};
  o.budgets = {0.25};
  auto rows = EvaluateQuality(*model_, text_, o);
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  // Token-level selections attend their budget; ContiguousKV adds whole forced chunks on top;
  // AS+LRU loads and attends everything.
  EXPECT_NEAR(Find(*rows, "as-h2o-lru", 0.25).attended_fraction, 0.25, 0.01);
  EXPECT_NEAR(Find(*rows, "impress", 0.25).attended_fraction, 0.25, 0.01);
  EXPECT_NEAR(Find(*rows, "impress-vote", 0.25).attended_fraction, 0.25, 0.01);
  EXPECT_EQ(Find(*rows, "impress-vote", 0.25).probe_vote_fraction, 1.0);
  EXPECT_GT(Find(*rows, "contiguouskv", 0.25).attended_fraction, 0.25);
  const QualityRow full = Find(*rows, "as-lru", 0.25);
  EXPECT_DOUBLE_EQ(full.attended_fraction, 1.0);
  EXPECT_LT(std::abs(full.mean_kl), 1e-9);
  for (const auto& r : *rows) EXPECT_GT(r.windows, 0);
  const double votes = Find(*rows, "impress", 0.25).probe_vote_fraction;
  EXPECT_GE(votes, 0.0);
  EXPECT_LE(votes, 1.0);
  EXPECT_EQ(Find(*rows, "contiguouskv", 0.25).probe_vote_fraction, 0.0);
}

// Bytes read per system, as a fraction of the prefix's stored KV: a full load reads all of it
// and scores nothing; selection reads less in all, of which its scoring reads are a part;
// AS+H2O reads every key (the K halves of attended blocks count as attended, the rest as
// identification-only).
TEST_F(QualityTest, ReadFractionsFollowEachSystemsReads) {
  QualityOptions o = Options();
  o.systems = {"contiguouskv", "impress-vote", "as-h2o-lru", "as-lru"};
  o.budgets = {0.1, 1.0};
  auto rows = EvaluateQuality(*model_, text_, o);
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  const QualityRow full = Find(*rows, "as-lru", 0.1);
  EXPECT_GE(full.read_fraction, 1.0);
  EXPECT_EQ(full.scoring_read_fraction, 0.0);
  const QualityRow ckv_all = Find(*rows, "contiguouskv", 1.0);
  EXPECT_GE(ckv_all.read_fraction, 1.0);
  EXPECT_EQ(ckv_all.scoring_read_fraction, 0.0);  // everything selected: nothing to score
  for (const char* s : {"contiguouskv", "impress-vote", "as-h2o-lru"}) {
    const QualityRow r = Find(*rows, s, 0.1);
    EXPECT_GT(r.scoring_read_fraction, 0.0) << s;
    EXPECT_GT(r.read_fraction, r.scoring_read_fraction) << s;
    EXPECT_LT(r.read_fraction, full.read_fraction) << s;
  }
  EXPECT_GE(Find(*rows, "as-h2o-lru", 0.1).read_fraction, 0.5);
}

TEST_F(QualityTest, UnknownAndMeaninglessSystemsAreRefused) {
  QualityOptions o = Options();
  o.budgets = {0.5};
  o.systems = {"vllm"};
  auto rows = EvaluateQuality(*model_, text_, o);
  ASSERT_FALSE(rows.ok());
  EXPECT_NE(rows.status().ToString().find("vllm"), std::string::npos);
  o.systems = {"contiguouskv"};
  o.budgets = {1.5};
  rows = EvaluateQuality(*model_, text_, o);
  ASSERT_FALSE(rows.ok());
  EXPECT_NE(rows.status().ToString().find("(0, 1]"), std::string::npos);
  o.budgets = {0.5};
  o.systems = {"recompute"};
  rows = EvaluateQuality(*model_, text_, o);
  ASSERT_FALSE(rows.ok());
  EXPECT_NE(rows.status().ToString().find("recompute"), std::string::npos);
}

}  // namespace
}  // namespace ckv
