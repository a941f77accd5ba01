#include <algorithm>
#include <cmath>

#include "ckv/generate.h"

namespace ckv {

Status ValidateSampling(const SamplingOptions& opts) {
  if (!(opts.temperature >= 0.0f) || !std::isfinite(opts.temperature)) {
    return Status::InvalidArgument("temperature must be a finite number >= 0");
  }
  if (!(opts.top_p > 0.0f && opts.top_p <= 1.0f)) {
    return Status::InvalidArgument("top_p must be in (0, 1]");
  }
  return Status::OK();
}

int32_t Argmax(std::span<const float> logits) {
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

int32_t Sampler::Sample(std::span<const float> logits) {
  if (opts_.temperature == 0.0f) return Argmax(logits);
  const float max_logit = *std::max_element(logits.begin(), logits.end());
  scratch_.clear();
  scratch_.reserve(logits.size());
  double sum = 0.0;
  for (size_t i = 0; i < logits.size(); ++i) {
    const float p = std::exp((logits[i] - max_logit) / opts_.temperature);
    scratch_.emplace_back(p, static_cast<int32_t>(i));
    sum += p;
  }
  // Highest probability first; ties by id so a seed always gives the same draw.
  std::sort(scratch_.begin(), scratch_.end(), [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  });
  size_t keep = scratch_.size();
  if (opts_.top_p < 1.0f) {
    double cum = 0.0;
    for (size_t i = 0; i < scratch_.size(); ++i) {
      cum += scratch_[i].first / sum;
      if (cum >= opts_.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  double kept_sum = 0.0;
  for (size_t i = 0; i < keep; ++i) kept_sum += scratch_[i].first;
  std::uniform_real_distribution<double> dist(0.0, kept_sum);
  const double u = dist(rng_);
  double cum = 0.0;
  for (size_t i = 0; i < keep; ++i) {
    cum += scratch_[i].first;
    if (u < cum) return scratch_[i].second;
  }
  return scratch_[keep - 1].second;
}

}  // namespace ckv
