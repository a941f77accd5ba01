// Handing sampled tokens to a request, the one place that decides when generation stops.
#pragma once

#include <cstdint>

#include "ckv/reprefill.h"

namespace ckv {

// Hands a sampled token to the request: false when generation stops here (an end-of-sequence
// token, not emitted; or on_token declined it), with the reason in `stats`.
bool EmitToken(int32_t token, const ModelConfig& cfg, const ReprefillOptions& opts,
               ReprefillResult& res, ReprefillStats& stats);

}  // namespace ckv
