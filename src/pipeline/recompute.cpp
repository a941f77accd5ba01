#include "pipeline/recompute.h"

#include <algorithm>

namespace ckv {

using Clock = SteadyClock;

bool EmitToken(int32_t token, const ModelConfig& cfg, const ReprefillOptions& opts,
               ReprefillResult& res, ReprefillStats& stats) {
  const auto& eos = cfg.eos_token_ids;
  if (std::find(eos.begin(), eos.end(), token) != eos.end()) {
    stats.stopped_at_eos = true;
    return false;
  }
  res.generated_ids.push_back(token);
  if (opts.on_token && !opts.on_token(token)) {
    stats.stopped_by_callback = true;
    return false;
  }
  return true;
}

Result<ReprefillResult> Recompute(const Model& model, std::span<const int32_t> tokens,
                                  const ReprefillOptions& opts, ReprefillStats stats,
                                  Clock::time_point t0) {
  KVCache kv = model.NewCache(
      KVPrecision::kBF16, std::min<int64_t>(static_cast<int64_t>(tokens.size()) + opts.max_tokens,
                                            model.config().max_position_embeddings));
  ReprefillResult res;
  const auto c0 = Clock::now();
  if (opts.suffix_logits) {
    // Logits at every position; the "suffix" of a recompute is the whole context.
    CKV_RETURN_IF_ERROR(model.Forward(tokens, kv, &res.suffix_logits, /*all_logits=*/true));
    const size_t vocab = model.config().vocab_size;
    res.first_logits.assign(res.suffix_logits.end() - vocab, res.suffix_logits.end());
  } else {
    CKV_RETURN_IF_ERROR(model.Forward(tokens, kv, &res.first_logits));
  }
  stats.compute_ms = MsSince(c0);
  stats.prefix_tokens = 0;
  stats.suffix_tokens = static_cast<int64_t>(tokens.size());
  Sampler sampler(opts.sampling);
  std::vector<float> logits = res.first_logits;
  for (int step = 0; step < opts.max_tokens; ++step) {
    const int32_t next = sampler.Sample(logits);
    if (step == 0) stats.ttft_ms = MsSince(t0);
    if (!EmitToken(next, model.config(), opts, res, stats)) break;
    if (step + 1 == opts.max_tokens || kv.size() >= kv.capacity()) break;
    const auto d0 = Clock::now();
    const int32_t one[1] = {next};
    CKV_RETURN_IF_ERROR(model.Forward(one, kv, &logits));
    stats.decode_ms += MsSince(d0);
  }
  res.stats = std::move(stats);
  return res;
}

}  // namespace ckv
