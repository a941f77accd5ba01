// A loaded model: config, tokenizer and weights (memory-mapped, in their stored dtype),
// with the forward pass over a KV cache.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ckv/kv_cache.h"
#include "ckv/model_config.h"
#include "ckv/status.h"
#include "ckv/tokenizer.h"

namespace ckv {

class Transformer;

struct ModelOptions {
  // Reorder matmul weights into the GEMM library's blocked layout (faster prefill, one
  // more copy of the weights in memory).
  bool pack_weights = false;
  // Load without a tokenizer (ids-only use) when tokenizer.json is absent.
  bool require_tokenizer = true;
  // Read the weights into memory backed by huge pages at load, instead of mapping the files:
  // decode streams every weight once per token, and page-cache pages (4 KiB) cut the read
  // rate (docs/BENCHMARKS.md, "Decode and memory bandwidth"). Costs the read at load and
  // the weights' size in anonymous memory; false maps them lazily.
  bool resident_weights = true;
};

class Model {
 public:
  ~Model();
  static Result<std::unique_ptr<Model>> Load(const std::string& dir, const ModelOptions& opts = {});

  const ModelConfig& config() const { return config_; }
  // nullptr when loaded without a tokenizer.
  const Tokenizer* tokenizer() const { return tokenizer_.get(); }
  const std::string& dir() const { return dir_; }
  // Identifies the weights (a hash of the config and every weight's bytes): the key of the KV
  // this model stores.
  uint64_t fingerprint() const;
  // The dtype the weights are stored in ("bf16", "f16", "f32").
  const char* weight_dtype_name() const;
  // Whether the matmul weights also hold a copy in the GEMM library's layout
  // (ModelOptions::pack_weights).
  bool packed_weights() const { return packed_weights_; }
  // The layer-level engine (internal type; for the library's own pipelines).
  const Transformer& transformer() const { return *transformer_; }

  // Runs `tokens` at positions kv.size() .. kv.size()+n-1, appending their K/V to `kv`.
  // Fills `logits` with vocab_size floats for the last token, or for every token
  // (n x vocab_size, row-major) when all_logits is set. Errors: empty input, ids outside
  // the vocabulary, or more tokens than the cache / context holds.
  Status Forward(std::span<const int32_t> tokens, KVCache& kv, std::vector<float>* logits,
                 bool all_logits = false) const;

  // A KV cache sized for the model's context (or `capacity` tokens if > 0).
  KVCache NewCache(KVPrecision precision = KVPrecision::kBF16, int64_t capacity = 0) const;
  // bf16 for bf16/f16 weights; float32 for float32 weights, whose users asked for full
  // precision (the bundled model then reproduces its float32 reference exactly).
  KVPrecision DefaultKVPrecision() const;

 private:
  Model() = default;
  std::string dir_;
  ModelConfig config_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<Transformer> transformer_;
  bool packed_weights_ = false;
};

}  // namespace ckv
