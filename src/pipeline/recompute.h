// Plain prefill of the whole context, then decoding: the recompute system, and what a
// Re-Prefill request falls back to when no stored prefix matches or the stored one fails.
#pragma once

#include <span>

#include "ckv/reprefill.h"
#include "common/clock.h"

namespace ckv {

// Hands a sampled token to the request: false when generation stops here (an end-of-sequence
// token, not emitted; or on_token declined it), with the reason in `stats`.
bool EmitToken(int32_t token, const ModelConfig& cfg, const ReprefillOptions& opts,
               ReprefillResult& res, ReprefillStats& stats);

// `stats` carries what the caller already knows (system, note); t0 is when the request began
// (TTFT is measured from it).
Result<ReprefillResult> Recompute(const Model& model, std::span<const int32_t> tokens,
                                  const ReprefillOptions& opts, ReprefillStats stats,
                                  SteadyClock::time_point t0);

}  // namespace ckv
