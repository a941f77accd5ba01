// Random-weight models with real shapes, written as ordinary Hugging Face model
// directories: how we measure speed at 0.5B-7B sizes without downloading weights.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "ckv/model_config.h"
#include "ckv/status.h"

namespace ckv {

// The real Qwen2.5 configs: "qwen2.5-0.5b", "qwen2.5-1.5b", "qwen2.5-7b".
std::optional<ModelConfig> NamedConfig(const std::string& name);

struct SynthOptions {
  uint64_t seed = 0;
  std::string dtype = "bf16";  // weight dtype: bf16 | f16 | f32
  // Directory holding the tokenizer to copy (tokenizer.json or .json.gz, tokenizer_config.json);
  // empty = none. Skipped when the tokenizer has more ids than the config's vocab_size.
  std::string tokenizer_dir;
  // Shards hold at most this many bytes (several files + model.safetensors.index.json
  // when the model is larger).
  int64_t max_shard_bytes = int64_t{2} << 30;
};

// Writes config.json, *.safetensors (random weights: projections ~ N(0, 0.02), norms 1,
// biases ~ N(0, 0.02)), and the tokenizer files into `out_dir` (created if missing).
// InvalidArgument for a dtype it does not know.
Status SynthesizeModel(const ModelConfig& config, const std::string& out_dir,
                       const SynthOptions& opts);

}  // namespace ckv
