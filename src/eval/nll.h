// Log-probabilities of next-token distributions, in double: the one definition of NLL that
// every evaluation uses.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "ckv/kv_cache.h"
#include "ckv/model.h"
#include "ckv/status.h"

namespace ckv {

// log-softmax of a logits row.
std::vector<double> LogSoftmax(const float* logits, int vocab);

// -log softmax(logits)[target], without materializing the row.
double TokenNll(const float* logits, int vocab, int32_t target);

// Runs `seq` through the model from position 0, `forward_tokens` at a time (all-position logits
// of a whole 8K sequence at a large vocabulary would be GBs), and calls
// predicted(p, logits) for p = 1 .. len-1 with the vocab_size logits that predict seq[p];
// after each piece, piece_done(tokens run so far) when given.
Status ForEachPrediction(const Model& model, std::span<const int32_t> seq, KVPrecision kv,
                         int64_t forward_tokens,
                         const std::function<void(int64_t pos, const float* logits)>& predicted,
                         const std::function<void(int64_t done)>& piece_done = {});

}  // namespace ckv
