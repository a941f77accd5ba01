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

int32_t ArgMax(const float* logits, int vocab) {
  return static_cast<int32_t>(std::max_element(logits, logits + vocab) - logits);
}

}  // namespace ckv
