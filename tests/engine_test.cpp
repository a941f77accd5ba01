// The forward pass against the llama2.c reference outputs of the bundled model, and
// self-consistency of a tiny random Qwen2-shaped model (biases, GQA, untied head).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <random>

#include "ckv/generate.h"
#include "ckv/model.h"
#include "ckv/synth.h"
#include "kernels/dtype.h"
#include "test_util.h"

namespace ckv {
namespace {

using nlohmann::json;

json Golden(const std::string& name) {
  return json::parse(test::ReadFileOrDie(test::TestDataDir() + "/stories260k/" + name));
}

TEST(GoldenStories, GreedyMatchesReferenceTokenForToken) {
  auto model = test::LoadBundledModel();
  ASSERT_NE(model, nullptr);
  const json g = Golden("greedy.json");
  ASSERT_GE(g.size(), 9u);
  for (const auto& c : g) {
    const auto prompt_ids = c["prompt_ids"].get<std::vector<int32_t>>();
    auto enc = model->tokenizer()->Encode(c["prompt"].get<std::string>(), true);
    ASSERT_TRUE(enc.ok());
    EXPECT_EQ(*enc, prompt_ids) << c["prompt"];
    GenerateOptions go;
    go.max_tokens = 64;
    go.kv_precision = KVPrecision::kF32;
    auto res = Generate(*model, prompt_ids, go);
    ASSERT_TRUE(res.ok()) << res.status().ToString();
    EXPECT_EQ(res->generated_ids, c["generated_ids"].get<std::vector<int32_t>>()) << c["prompt"];
    auto full = model->tokenizer()->Decode(
        [&] {
          auto all = prompt_ids;
          all.insert(all.end(), res->generated_ids.begin(), res->generated_ids.end());
          return all;
        }(),
        true);
    ASSERT_TRUE(full.ok());
    EXPECT_EQ(*full, c["text"].get<std::string>());
  }
}

TEST(GoldenStories, FirstStepLogitsWithin1e4) {
  auto model = test::LoadBundledModel();
  ASSERT_NE(model, nullptr);
  for (const auto& c : Golden("logits.json")) {
    const auto ids = c["prompt_ids"].get<std::vector<int32_t>>();
    KVCache kv = model->NewCache(KVPrecision::kF32, static_cast<int64_t>(ids.size()));
    std::vector<float> logits;
    ASSERT_TRUE(model->Forward(ids, kv, &logits).ok());
    const auto ref = c["logits"].get<std::vector<float>>();
    ASSERT_EQ(logits.size(), ref.size());
    float max_diff = 0;
    for (size_t i = 0; i < ref.size(); ++i)
      max_diff = std::max(max_diff, std::abs(logits[i] - ref[i]));
    EXPECT_LE(max_diff, 1e-4f) << c["prompt"];
    EXPECT_EQ(Argmax(logits), c["argmax"].get<int>());
  }
}

TEST(GoldenStories, PerTokenNllMatchesReference) {
  auto model = test::LoadBundledModel();
  ASSERT_NE(model, nullptr);
  const json g = Golden("nll.json");
  const std::string text = test::ReadFileOrDie(test::TextDataDir() + "/tinystories.txt");
  auto ids = model->tokenizer()->Encode(text, true);
  ASSERT_TRUE(ids.ok());
  const int vocab = model->config().vocab_size;
  for (size_t w = 0; w < g["windows"].size(); ++w) {
    const auto& win = g["windows"][w];
    const auto ref = win["nll"].get<std::vector<double>>();
    std::vector<int32_t> window(ids->begin() + 512 * w, ids->begin() + 512 * (w + 1));
    KVCache kv = model->NewCache(KVPrecision::kF32, 512);
    std::vector<float> logits;
    ASSERT_TRUE(model->Forward(window, kv, &logits, /*all_logits=*/true).ok());
    double max_diff = 0;
    for (size_t t = 0; t + 1 < window.size(); ++t) {
      const float* row = logits.data() + t * vocab;
      double mx = row[0];
      for (int i = 1; i < vocab; ++i) mx = std::max<double>(mx, row[i]);
      double sum = 0;
      for (int i = 0; i < vocab; ++i) sum += std::exp(row[i] - mx);
      const double nll = -(row[window[t + 1]] - mx - std::log(sum));
      max_diff = std::max(max_diff, std::abs(nll - ref[t]));
    }
    EXPECT_LE(max_diff, 5e-4) << "window " << w;
  }
}

// A tiny Qwen2 config exercising biases, GQA (4 query heads per KV head) and an untied head.
ModelConfig TinyQwenConfig() {
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
  c.max_position_embeddings = 128;
  c.rms_norm_eps = 1e-6f;
  c.rope_theta = 1000000.0f;
  c.tie_word_embeddings = false;
  c.attention_bias = true;
  c.eos_token_ids = {299};
  return c;
}

std::unique_ptr<Model> MakeTiny(DType dtype, const std::string& tag) {
  const std::string dir = test::MakeTempDir(tag);
  SynthOptions so;
  so.seed = 42;
  so.dtype = dtype == DType::kF32 ? "f32" : dtype == DType::kF16 ? "f16" : "bf16";
  EXPECT_TRUE(SynthesizeModel(TinyQwenConfig(), dir, so).ok());
  ModelOptions mo;
  mo.require_tokenizer = false;
  auto m = Model::Load(dir, mo);
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return m.ok() ? std::move(m).value() : nullptr;
}

std::vector<int32_t> SomeIds(int n) {
  std::vector<int32_t> ids;
  for (int i = 0; i < n; ++i) ids.push_back((i * 37 + 11) % 300);
  return ids;
}

float MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  float d = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) d = std::max(d, std::abs(a[i] - b[i]));
  return d;
}

class TinyQwen : public ::testing::TestWithParam<DType> {};

TEST_P(TinyQwen, PrefillLogitsEqualStepByStepDecode) {
  auto model = MakeTiny(GetParam(), "tinyqwen");
  ASSERT_NE(model, nullptr);
  const auto ids = SomeIds(24);
  KVCache kv_batch = model->NewCache(KVPrecision::kF32, 64);
  std::vector<float> batch;
  ASSERT_TRUE(model->Forward(ids, kv_batch, &batch, true).ok());
  KVCache kv_step = model->NewCache(KVPrecision::kF32, 64);
  const int vocab = model->config().vocab_size;
  float max_diff = 0;
  for (size_t t = 0; t < ids.size(); ++t) {
    std::vector<float> step;
    ASSERT_TRUE(model->Forward(std::span(ids).subspan(t, 1), kv_step, &step).ok());
    std::vector<float> row(batch.begin() + t * vocab, batch.begin() + (t + 1) * vocab);
    max_diff = std::max(max_diff, MaxAbsDiff(row, step));
  }
  // Batched prefill runs the GEMM library (bf16 activations for bf16 weights), decode our
  // float32 GEMV; for f32 weights both are float32.
  EXPECT_LE(max_diff, GetParam() == DType::kF32 ? 1e-4f : 2e-2f);
  // Mixed: prefill half, then decode the rest.
  KVCache kv_mixed = model->NewCache(KVPrecision::kF32, 64);
  std::vector<float> mixed;
  ASSERT_TRUE(model->Forward(std::span(ids).first(12), kv_mixed, &mixed).ok());
  ASSERT_TRUE(model->Forward(std::span(ids).subspan(12), kv_mixed, &mixed).ok());
  std::vector<float> last(batch.end() - vocab, batch.end());
  EXPECT_LE(MaxAbsDiff(last, mixed), GetParam() == DType::kF32 ? 1e-4f : 2e-2f);
}

TEST_P(TinyQwen, Bf16KvAgreesWithF32Kv) {
  auto model = MakeTiny(GetParam(), "tinyqwen-kv");
  ASSERT_NE(model, nullptr);
  const auto ids = SomeIds(40);
  KVCache kv32 = model->NewCache(KVPrecision::kF32, 64);
  KVCache kv16 = model->NewCache(KVPrecision::kBF16, 64);
  std::vector<float> a, b;
  ASSERT_TRUE(model->Forward(ids, kv32, &a, true).ok());
  ASSERT_TRUE(model->Forward(ids, kv16, &b, true).ok());
  float max_abs = 0;
  for (float v : a) max_abs = std::max(max_abs, std::abs(v));
  EXPECT_LE(MaxAbsDiff(a, b), 0.02f * std::max(1.0f, max_abs));
}

INSTANTIATE_TEST_SUITE_P(Dtypes, TinyQwen,
                         ::testing::Values(DType::kF32, DType::kBF16, DType::kF16),
                         [](const auto& info) { return std::string(DTypeName(info.param)); });

TEST(ForwardErrors, RejectsEmptyOutOfVocabAndTooLong) {
  auto model = MakeTiny(DType::kF32, "tinyqwen-err");
  ASSERT_NE(model, nullptr);
  KVCache kv = model->NewCache(KVPrecision::kF32, 0);
  std::vector<float> logits;
  Status st = model->Forward({}, kv, &logits);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  const int32_t bad[2] = {5, 300};
  st = model->Forward(bad, kv, &logits);
  EXPECT_EQ(st.code(), StatusCode::kOutOfRange);
  EXPECT_NE(st.message().find("300"), std::string::npos);
  EXPECT_EQ(kv.size(), 0);
  const auto long_ids = SomeIds(129);
  st = model->Forward(long_ids, kv, &logits);
  EXPECT_EQ(st.code(), StatusCode::kOutOfRange);
  EXPECT_NE(st.message().find("context"), std::string::npos);

  auto gen = Generate(*model, std::vector<int32_t>{}, GenerateOptions{});
  EXPECT_FALSE(gen.ok());
  auto gen_long = Generate(*model, long_ids, GenerateOptions{});
  EXPECT_EQ(gen_long.status().code(), StatusCode::kOutOfRange);
}

TEST(Sampling, SeededAndNucleusRespected) {
  std::vector<float> logits = {0.f, 3.f, 2.9f, -5.f, 1.f};
  EXPECT_EQ(Argmax(logits), 1);
  SamplingOptions so{1.0f, 1.0f, 123};
  Sampler a(so), b(so);
  std::vector<int32_t> draws_a, draws_b;
  for (int i = 0; i < 200; ++i) {
    draws_a.push_back(a.Sample(logits));
    draws_b.push_back(b.Sample(logits));
  }
  EXPECT_EQ(draws_a, draws_b);
  EXPECT_NE(std::count(draws_a.begin(), draws_a.end(), 2), 0);  // temperature 1 explores
  // top_p small enough to keep only the best two tokens.
  Sampler nucleus(SamplingOptions{1.0f, 0.6f, 5});
  for (int i = 0; i < 500; ++i) {
    const int32_t t = nucleus.Sample(logits);
    EXPECT_TRUE(t == 1 || t == 2) << t;
  }
  EXPECT_FALSE(ValidateSampling({-1.f, 1.f, 0}).ok());
  EXPECT_FALSE(ValidateSampling({1.f, 0.f, 0}).ok());
  EXPECT_FALSE(ValidateSampling({1.f, 1.5f, 0}).ok());
}

// The nucleus as the sampler defined it before it stopped ranking the whole vocabulary: every
// (probability, id) pair sorted, most probable first, ties by id.
int32_t FullSortNucleusDraw(std::span<const float> logits, const SamplingOptions& so,
                            std::mt19937_64& rng) {
  const float max_logit = *std::max_element(logits.begin(), logits.end());
  std::vector<std::pair<float, int32_t>> ranked;
  double sum = 0.0;
  for (size_t i = 0; i < logits.size(); ++i) {
    const float p = std::exp((logits[i] - max_logit) / so.temperature);
    ranked.emplace_back(p, static_cast<int32_t>(i));
    sum += p;
  }
  std::sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  });
  size_t keep = ranked.size();
  double cum = 0.0;
  for (size_t i = 0; i < ranked.size(); ++i) {
    cum += ranked[i].first / sum;
    if (cum >= so.top_p) {
      keep = i + 1;
      break;
    }
  }
  double kept_sum = 0.0;
  for (size_t i = 0; i < keep; ++i) kept_sum += ranked[i].first;
  std::uniform_real_distribution<double> dist(0.0, kept_sum);
  const double u = dist(rng);
  double c = 0.0;
  for (size_t i = 0; i < keep; ++i) {
    c += ranked[i].first;
    if (u < c) return ranked[i].second;
  }
  return ranked[keep - 1].second;
}

TEST(Sampling, NucleusIsTheOneOfRankingTheWholeVocabulary) {
  // A 20,000-token vocabulary: a few peaks over a flat floor with many exact ties, so nuclei
  // from 1 token to far beyond the first 256 ranked (and beyond 2,048) all occur.
  std::vector<float> logits(20000);
  std::mt19937 gen(7);
  std::uniform_int_distribution<int> level(0, 40);
  for (auto& l : logits) l = 0.05f * static_cast<float>(level(gen));
  logits[123] = 9.0f;
  logits[4567] = 8.5f;
  logits[19999] = 8.5f;
  for (float temperature : {0.3f, 1.0f, 1.7f}) {
    for (float top_p : {0.05f, 0.5f, 0.9f, 0.999f}) {
      SamplingOptions so{temperature, top_p, 42};
      Sampler sampler(so);
      std::mt19937_64 rng(so.seed);
      for (int i = 0; i < 40; ++i) {
        ASSERT_EQ(sampler.Sample(logits), FullSortNucleusDraw(logits, so, rng))
            << "temperature " << temperature << " top_p " << top_p << " draw " << i;
      }
    }
  }
}

TEST(Sampling, DrawsFollowTheSoftmaxAndNeverAnImpossibleToken) {
  // exp(-1e30) is 0: those two tokens must never come out, even from rounding at the end.
  const std::vector<float> logits = {-1e30f, 1.0f, 0.0f, 2.0f, -1.0f, -1e30f};
  const float temperature = 0.8f;
  Sampler sampler(SamplingOptions{temperature, 1.0f, 99});
  std::vector<int> counts(logits.size(), 0);
  const int draws = 100000;
  for (int i = 0; i < draws; ++i) counts[sampler.Sample(logits)] += 1;
  double z = 0.0;
  for (float l : logits) z += std::exp(static_cast<double>(l) / temperature);
  for (size_t t = 0; t < logits.size(); ++t) {
    const double p = std::exp(static_cast<double>(logits[t]) / temperature) / z;
    // 5 standard deviations of a binomial count.
    const double tolerance = 5.0 * std::sqrt(draws * p * (1.0 - p)) + 1.0;
    EXPECT_NEAR(counts[t], draws * p, tolerance) << "token " << t;
  }
  EXPECT_EQ(counts[0], 0);
  EXPECT_EQ(counts[5], 0);
}

}  // namespace
}  // namespace ckv
