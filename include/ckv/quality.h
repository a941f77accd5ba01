// Quality of pruned Re-Prefill against full attention, on windows of a real text:
// first-token top-1 agreement, KL divergence of the next-token distribution, mean NLL of the
// true next tokens over the suffix, and the fraction of prefix tokens attended.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ckv/model.h"
#include "ckv/reprefill.h"

namespace ckv {

struct QualityOptions {
  std::vector<int64_t> prefix_tokens = {256, 448};
  std::vector<int64_t> suffix_tokens = {8, 32};
  std::vector<double> budgets = {0.1, 0.25, 0.5};
  // contiguouskv (full-key scoring), contiguouskv-summaries, random (ContiguousKV's forced
  // chunks and budget, random picks), as-lru, as-h2o-lru, impress (each on its own layout)
  std::vector<std::string> systems = {"contiguouskv", "contiguouskv-summaries", "random"};
  int windows = 200;  // per (prefix, suffix) setting, spread evenly over the text
  int chunk_tokens = 16;
  int period = 8;
  std::string store_dir;  // a scratch store (created; prefixes are removed afterwards)
};

struct QualityRow {
  std::string system;
  double budget = 0;
  int64_t prefix_tokens = 0;  // 0 = pooled over all settings
  int64_t suffix_tokens = 0;
  int64_t windows = 0;
  double top1_agreement = 0;     // first token equals full attention's
  double mean_kl = 0;            // KL(full || pruned) of the first-token distribution, nats
  double mean_nll = 0;           // mean -log p(true next token) over suffix positions
  double full_mean_nll = 0;      // the same under full attention
  double attended_fraction = 0;  // prefix tokens attended / prefix tokens, forced included
  // Bytes read from the store / the prefix's stored K+V bytes (all layers): scoring reads,
  // attended units, speculative reads that were not selected, 4 KiB padding and read
  // amplification included; what "equal bytes read" compares systems by. No memory cache.
  double read_fraction = 0;
  // Of which identification-only reads: keys, summaries or probe copies of data that was not
  // then attended (a read that is both scored and attended counts as attended).
  double scoring_read_fraction = 0;
  // IMPRESS: fraction of identified layers whose probe heads agreed (0 for other systems).
  double probe_vote_fraction = 0;
  // ContiguousKV: share of a period's selected chunks (forced ones aside) that the previous
  // period selected too, i.e. the inter-period speculation's hit rate; -1 where not defined
  // (other systems, one period, budget 1).
  double adjacent_overlap = -1;
};

// Rows per (system, budget, setting) followed by rows pooled over settings (prefix 0).
Result<std::vector<QualityRow>> EvaluateQuality(const Model& model, const std::string& text,
                                                const QualityOptions& opts,
                                                const std::function<void(double)>& progress = {});

}  // namespace ckv
