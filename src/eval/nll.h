// Log-probabilities of next-token distributions, in double: the one definition of NLL that
// every evaluation uses.
#pragma once

#include <cstdint>
#include <vector>

namespace ckv {

// log-softmax of a logits row.
std::vector<double> LogSoftmax(const float* logits, int vocab);

// -log softmax(logits)[target], without materializing the row.
double TokenNll(const float* logits, int vocab, int32_t target);

// Index of the largest logit (the first one on ties).
int32_t ArgMax(const float* logits, int vocab);

}  // namespace ckv
