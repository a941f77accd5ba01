// Token sampling and the generate loop (prefill the prompt, then decode step by step).
#pragma once

#include <cstdint>
#include <functional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "ckv/model.h"
#include "ckv/status.h"

namespace ckv {

struct SamplingOptions {
  float temperature = 0.0f;  // 0 = greedy (argmax, lowest id on ties)
  float top_p = 1.0f;        // nucleus: smallest set of tokens whose probability >= top_p
  uint64_t seed = 0;
};

Status ValidateSampling(const SamplingOptions& opts);

// Draws tokens from softmax(logits / temperature), restricted to the nucleus when top_p < 1.
// The same options and seed give the same draws. Not thread-safe; one per sequence (distinct
// Samplers may run on different threads at once).
class Sampler {
 public:
  explicit Sampler(const SamplingOptions& opts) : opts_(opts), rng_(opts.seed) {}
  int32_t Sample(std::span<const float> logits);

 private:
  int32_t SampleNucleus(double sum);

  SamplingOptions opts_;
  std::mt19937_64 rng_;
  std::vector<float> probs_;  // unnormalized, by token id
  std::vector<std::pair<float, int32_t>> ranked_;
};

int32_t Argmax(std::span<const float> logits);

struct GenerateOptions {
  int max_tokens = 64;
  SamplingOptions sampling;
  bool stop_at_eos = true;
  KVPrecision kv_precision = KVPrecision::kBF16;
};

struct GenerateResult {
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> generated_ids;
  std::string text;  // the continuation (decoded generated ids, special tokens skipped)
  bool stopped_at_eos = false;
  double prefill_ms = 0;
  double decode_ms = 0;
};

// Called after each generated token; return false to stop early.
using TokenCallback = std::function<bool(int32_t id)>;

Result<GenerateResult> Generate(const Model& model, std::span<const int32_t> prompt_ids,
                                const GenerateOptions& opts, const TokenCallback& on_token = {});

// Decodes `generated` as the continuation of `prompt` (so leading-space handling matches
// decoding the whole sequence).
Result<std::string> DecodeContinuation(const Tokenizer& tok, std::span<const int32_t> prompt,
                                       std::span<const int32_t> generated);

}  // namespace ckv
