// ckv eval perplexity / induction against llama2.c's per-token NLLs and direct forward passes.
#include "ckv/perplexity.h"

#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <numeric>

#include "test_util.h"

namespace ckv {
namespace {

using nlohmann::json;

std::string Stories() {
  return test::ReadFileOrDie(test::TextDataDir() + "/tinystories.txt");
}

double Mean(const std::vector<double>& v, size_t begin, size_t end) {
  return std::accumulate(v.begin() + begin, v.begin() + end, 0.0) /
         static_cast<double>(end - begin);
}

// The first window (BOS + the text's first 511 tokens) is window 0 of llama2.c's nll.json.
TEST(Perplexity, FirstWindowMatchesTheReferenceByPosition) {
  auto model = test::LoadBundledModel();
  ASSERT_NE(model, nullptr);
  const json g = json::parse(test::ReadFileOrDie(test::TestDataDir() + "/stories260k/nll.json"));
  const auto ref = g["windows"][0]["nll"].get<std::vector<double>>();  // ref[t]: token t + 1
  ASSERT_EQ(ref.size(), 511u);
  PerplexityOptions o;
  o.context = 512;
  o.max_windows = 1;
  o.forward_tokens = 100;  // pieces must not change what is predicted
  auto r = EvaluatePerplexity(*model, Stories(), o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->windows, 1);
  EXPECT_FALSE(r->partial_window);
  EXPECT_EQ(r->tokens_scored, 511);
  ASSERT_EQ(r->buckets.size(), 2u);
  EXPECT_EQ(r->buckets[0].begin, 0);
  EXPECT_EQ(r->buckets[0].end, 256);
  EXPECT_EQ(r->buckets[0].tokens, 255);  // positions 1..255: BOS is not predicted
  EXPECT_EQ(r->buckets[1].end, 512);     // 256-1K, cut at the window's end
  EXPECT_EQ(r->buckets[1].tokens, 256);
  EXPECT_NEAR(r->buckets[0].mean_nll, Mean(ref, 0, 255), 5e-4);
  EXPECT_NEAR(r->buckets[1].mean_nll, Mean(ref, 255, 511), 5e-4);
  EXPECT_NEAR(r->mean_nll, g["windows"][0]["mean_nll"].get<double>(), 5e-4);
}

// Later windows start with their own BOS, then the next 511 tokens of the text.
TEST(Perplexity, EveryWindowStartsWithBosAndTheNextTokens) {
  auto model = test::LoadBundledModel();
  ASSERT_NE(model, nullptr);
  const std::string text = Stories();
  PerplexityOptions o;
  o.context = 300;
  o.max_windows = 3;
  auto r = EvaluatePerplexity(*model, text, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->windows, 3);
  EXPECT_EQ(r->tokens_scored, 3 * 299);

  auto ids = model->tokenizer()->Encode(text, false);
  ASSERT_TRUE(ids.ok());
  const int vocab = model->config().vocab_size;
  double total = 0;
  for (int w = 0; w < 3; ++w) {
    std::vector<int32_t> window = {*model->tokenizer()->bos_id()};
    window.insert(window.end(), ids->begin() + 299 * w, ids->begin() + 299 * (w + 1));
    KVCache kv = model->NewCache(KVPrecision::kF32, 300);
    std::vector<float> logits;
    ASSERT_TRUE(model->Forward(window, kv, &logits, /*all_logits=*/true).ok());
    for (size_t t = 0; t + 1 < window.size(); ++t) {
      const float* row = logits.data() + t * vocab;
      double mx = row[0], sum = 0;
      for (int i = 1; i < vocab; ++i) mx = std::max<double>(mx, row[i]);
      for (int i = 0; i < vocab; ++i) sum += std::exp(row[i] - mx);
      total += mx + std::log(sum) - row[window[t + 1]];
    }
  }
  EXPECT_NEAR(r->mean_nll, total / (3 * 299), 1e-5);
}

TEST(Perplexity, AShortTextIsOnePartialWindow) {
  auto model = test::LoadBundledModel();
  ASSERT_NE(model, nullptr);
  auto r = EvaluatePerplexity(*model, "Once upon a time there was a cat.", {});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->partial_window);
  EXPECT_EQ(r->windows, 1);
  EXPECT_EQ(r->tokens_scored, r->text_tokens);
  ASSERT_EQ(r->buckets.size(), 1u);
  EXPECT_EQ(r->buckets[0].end, r->text_tokens + 1);
  EXPECT_GT(r->mean_nll, 0);
}

TEST(Perplexity, BadArgumentsNameTheProblem) {
  auto model = test::LoadBundledModel();
  ASSERT_NE(model, nullptr);
  PerplexityOptions o;
  o.context = 1;
  auto tiny = EvaluatePerplexity(*model, "Once", o);
  ASSERT_FALSE(tiny.ok());
  EXPECT_NE(tiny.status().ToString().find("--context"), std::string::npos);
  o.context = 513;
  auto big = EvaluatePerplexity(*model, "Once", o);
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.status().ToString().find("max_position_embeddings = 512"), std::string::npos);
  o.context = -5;
  auto negative = EvaluatePerplexity(*model, "Once", o);
  ASSERT_FALSE(negative.ok());
  EXPECT_NE(negative.status().ToString().find("negative"), std::string::npos);
  auto empty = EvaluatePerplexity(*model, "", {});
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.status().ToString().find("no tokens"), std::string::npos);
}

TEST(Induction, IsRepeatableAndScoresEveryRepeatedToken) {
  auto model = test::LoadBundledModel();
  ASSERT_NE(model, nullptr);
  InductionOptions o;
  o.span_tokens = 8;
  o.gaps = {0, 100};
  o.trials = 3;
  auto a = InductionProbe(*model, Stories(), o);
  auto b = InductionProbe(*model, Stories(), o);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  ASSERT_TRUE(b.ok());
  ASSERT_EQ(a->size(), 2u);
  for (size_t i = 0; i < a->size(); ++i) {
    EXPECT_EQ((*a)[i].gap, o.gaps[i]);
    EXPECT_EQ((*a)[i].trials, 3);
    EXPECT_DOUBLE_EQ((*a)[i].first_nll, (*b)[i].first_nll);
    EXPECT_DOUBLE_EQ((*a)[i].second_nll, (*b)[i].second_nll);
    // Random tokens from a 512-token vocabulary: far from free to predict the first time.
    EXPECT_GT((*a)[i].first_nll, std::log(2.0));
  }
  o.forward_tokens = 5;  // pieces must not change what is predicted
  auto pieces = InductionProbe(*model, Stories(), o);
  ASSERT_TRUE(pieces.ok());
  for (size_t i = 0; i < a->size(); ++i) {
    EXPECT_NEAR((*a)[i].first_nll, (*pieces)[i].first_nll, 1e-4);
    EXPECT_NEAR((*a)[i].second_nll, (*pieces)[i].second_nll, 1e-4);
  }
  o.forward_tokens = 512;
  o.seed = 2;
  auto c = InductionProbe(*model, Stories(), o);
  ASSERT_TRUE(c.ok());
  EXPECT_NE((*a)[0].first_nll, (*c)[0].first_nll);

  o.text_spans = true;  // natural text: the first occurrence is far easier than random tokens
  auto text = InductionProbe(*model, Stories(), o);
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  EXPECT_LT((*text)[0].first_nll, (*a)[0].first_nll);
  o.text_spans = false;

  o.gaps = {600};  // 1 + 2 * 8 + 600 > 512 positions
  auto too_long = InductionProbe(*model, Stories(), o);
  ASSERT_FALSE(too_long.ok());
  EXPECT_NE(too_long.status().ToString().find("gap 600"), std::string::npos);
}

TEST(PerplexityCli, JsonReportAndErrors) {
  const auto run = test::RunCli("eval perplexity --context 256 --max-windows 2 --json --text " +
                                test::TextDataDir() + "/tinystories.txt");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const json j = json::parse(run.output);
  EXPECT_EQ(j["windows"], 2);
  EXPECT_EQ(j["tokens_scored"], 2 * 255);
  EXPECT_EQ(j["buckets"].size(), 1u);

  const auto missing = test::RunCli("eval perplexity --text /nonexistent/book.txt");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.output.find("/nonexistent/book.txt"), std::string::npos) << missing.output;
  const auto dir = test::RunCli("eval perplexity --text " + test::TextDataDir());
  EXPECT_EQ(dir.exit_code, 1);
  EXPECT_NE(dir.output.find("is a directory"), std::string::npos) << dir.output;
  const auto too_long = test::RunCli("eval perplexity --context 4096 --text " +
                                     test::TextDataDir() + "/tinystories.txt");
  EXPECT_EQ(too_long.exit_code, 1);
  EXPECT_NE(too_long.output.find("max_position_embeddings"), std::string::npos);

  const auto ind = test::RunCli("eval induction --span 4 --gaps 10 --trials 2 --json --text " +
                                test::TextDataDir() + "/tinystories.txt");
  ASSERT_EQ(ind.exit_code, 0) << ind.output;
  EXPECT_EQ(json::parse(ind.output)[0]["gap"], 10);
}

}  // namespace
}  // namespace ckv
