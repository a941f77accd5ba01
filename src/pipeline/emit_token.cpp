#include "pipeline/emit_token.h"

#include <algorithm>

namespace ckv {

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

}  // namespace ckv
