// How well a model predicts a text, by position in its context window: the evidence that a
// model uses long context (a later bucket's NLL clearly below the first one's), and an
// induction probe (a random span seen once is predicted far better the second time).
//
// Threading: both functions run on the calling thread (the model's kernels use OpenMP).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ckv/kv_cache.h"
#include "ckv/model.h"
#include "ckv/status.h"

namespace ckv {

struct PerplexityOptions {
  // Window length in tokens, BOS included; 0 = the model's context. The text (encoded without
  // BOS) is cut into consecutive windows of context - 1 tokens, each evaluated on its own after
  // a BOS, so position 0 of every window is BOS, as when the model was trained and served.
  int64_t context = 0;
  int64_t max_windows = 0;       // 0 = every window the text fills (and one partial if none)
  int64_t forward_tokens = 512;  // tokens per forward call (bounds the logits buffer)
  KVPrecision kv = KVPrecision::kF32;
};

// Mean NLL of the tokens predicted at positions [begin, end) of a window.
struct PositionBucket {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t tokens = 0;
  double mean_nll = 0;
};

struct PerplexityReport {
  int64_t text_tokens = 0;  // the text's tokens, without BOS
  int64_t context = 0;      // window length used
  int64_t windows = 0;
  bool partial_window = false;  // the text is shorter than one window; its only window is short
  int64_t tokens_scored = 0;
  double mean_nll = 0;
  // 0-255, 256-1K, 1K-2K, 2K-4K, 4K-8K, then doubling: those the windows reach.
  std::vector<PositionBucket> buckets;
};

Result<PerplexityReport> EvaluatePerplexity(const Model& model, const std::string& text,
                                            const PerplexityOptions& opts,
                                            const std::function<void(double)>& progress = {});

struct InductionOptions {
  int64_t span_tokens = 32;  // random tokens, repeated once
  // Tokens of real text between the two occurrences (from `filler_text`, cycled).
  std::vector<int64_t> gaps = {256, 1024, 3072};
  int trials = 8;  // different random spans (and filler offsets) per gap
  // Spans cut from `filler_text` at random places instead of random tokens: natural text the
  // model can predict the first time, so the gain at the repetition is copying from context
  // on the kind of text it was trained on (random tokens are the strict test).
  bool text_spans = false;
  uint64_t seed = 1;
  int64_t forward_tokens = 512;  // tokens per forward call (bounds the logits buffer)
  KVPrecision kv = KVPrecision::kF32;
};

struct InductionRow {
  int64_t gap = 0;
  int trials = 0;
  double first_nll = 0;    // mean NLL of span tokens 2..n at their first occurrence
  double second_nll = 0;   // the same tokens at the repetition
  double second_top1 = 0;  // fraction of repeated tokens that are the model's argmax
};

// Each trial: BOS, a span of uniformly random non-special tokens (or of the text), `gap` tokens
// of filler text, the same span again. A model that copies from context predicts the repetition far
// better.
Result<std::vector<InductionRow>> InductionProbe(const Model& model, const std::string& filler_text,
                                                 const InductionOptions& opts);

}  // namespace ckv
