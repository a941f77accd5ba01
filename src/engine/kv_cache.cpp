#include "ckv/kv_cache.h"

namespace ckv {

KVCache::KVCache(const ModelConfig& config, KVPrecision precision, int64_t capacity_tokens)
    : precision_(precision), kv_dim_(config.kv_dim()), capacity_(capacity_tokens) {
  const size_t bytes = static_cast<size_t>(capacity_tokens) * kv_dim_ * elem_bytes();
  k_.resize(config.num_layers);
  v_.resize(config.num_layers);
  for (int l = 0; l < config.num_layers; ++l) {
    k_[l].resize(bytes);
    v_[l].resize(bytes);
  }
}

}  // namespace ckv
