// The KV cache of one sequence: per layer, keys (after RoPE) and values of every token so far.
#pragma once

#include <cstdint>
#include <vector>

#include "ckv/model_config.h"

namespace ckv {

enum class KVPrecision { kBF16, kF32 };

class KVCache {
 public:
  // Room for `capacity_tokens` tokens; Forward refuses to go beyond it.
  KVCache(const ModelConfig& config, KVPrecision precision, int64_t capacity_tokens);

  int64_t size() const { return size_; }
  int64_t capacity() const { return capacity_; }
  KVPrecision precision() const { return precision_; }
  int elem_bytes() const { return precision_ == KVPrecision::kBF16 ? 2 : 4; }
  int num_layers() const { return static_cast<int>(k_.size()); }
  int kv_dim() const { return kv_dim_; }

  // Raw rows of layer `layer`: token t starts at byte t * kv_dim * elem_bytes.
  void* k(int layer) { return k_[layer].data(); }
  void* v(int layer) { return v_[layer].data(); }
  const void* k(int layer) const { return k_[layer].data(); }
  const void* v(int layer) const { return v_[layer].data(); }

  // Drops tokens from `n` on (keeps the first n).
  void Truncate(int64_t n) {
    if (n < size_) size_ = n;
  }
  // Marks `n` more tokens as stored (their rows must have been written).
  void Advance(int64_t n) { size_ += n; }

 private:
  KVPrecision precision_;
  int kv_dim_;
  int64_t capacity_;
  int64_t size_ = 0;
  std::vector<std::vector<unsigned char>> k_;
  std::vector<std::vector<unsigned char>> v_;
};

}  // namespace ckv
