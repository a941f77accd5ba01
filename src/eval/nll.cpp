#include "eval/nll.h"

#include <algorithm>
#include <cmath>

namespace ckv {
namespace {

double LogSumExp(const float* logits, int vocab) {
  double mx = logits[0];
  for (int i = 1; i < vocab; ++i) mx = std::max<double>(mx, logits[i]);
  double sum = 0;
  for (int i = 0; i < vocab; ++i) sum += std::exp(logits[i] - mx);
  return mx + std::log(sum);
}

}  // namespace

std::vector<double> LogSoftmax(const float* logits, int vocab) {
  const double lse = LogSumExp(logits, vocab);
  std::vector<double> out(vocab);
  for (int i = 0; i < vocab; ++i) out[i] = logits[i] - lse;
  return out;
}

double TokenNll(const float* logits, int vocab, int32_t target) {
  return LogSumExp(logits, vocab) - logits[target];
}

Status ForEachPrediction(const Model& model, std::span<const int32_t> seq, KVPrecision kv,
                         int64_t forward_tokens,
                         const std::function<void(int64_t pos, const float* logits)>& predicted,
                         const std::function<void(int64_t done)>& piece_done) {
  const int64_t len = static_cast<int64_t>(seq.size());
  const int vocab = model.config().vocab_size;
  KVCache cache = model.NewCache(kv, len);
  std::vector<float> logits;
  // The last token is only ever a target: logits at position p predict the token at p + 1.
  for (int64_t start = 0; start + 1 < len; start += forward_tokens) {
    const int64_t n = std::min(forward_tokens, len - 1 - start);
    CKV_RETURN_IF_ERROR(model.Forward(seq.subspan(start, n), cache, &logits, /*all_logits=*/true));
    for (int64_t i = 0; i < n; ++i) predicted(start + i + 1, logits.data() + i * vocab);
    if (piece_done) piece_done(start + n);
  }
  return Status::OK();
}

}  // namespace ckv
