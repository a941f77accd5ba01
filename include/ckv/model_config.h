// The transformer hyper-parameters read from a Hugging Face config.json.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ckv/status.h"

namespace ckv {

enum class ModelArch { kLlama, kQwen2 };

struct ModelConfig {
  ModelArch arch = ModelArch::kLlama;
  std::string model_type;  // as written in config.json ("llama", "qwen2")
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;  // hidden_size / num_heads unless given
  int vocab_size = 0;
  int max_position_embeddings = 0;
  float rms_norm_eps = 1e-6f;
  float rope_theta = 10000.0f;
  bool tie_word_embeddings = false;
  bool attention_bias = false;         // q/k/v biases (always true for qwen2)
  std::vector<int32_t> bos_token_ids;  // may be empty
  std::vector<int32_t> eos_token_ids;  // may be empty (config allows int or list)
  std::string torch_dtype;             // informational

  // Parses and validates; errors name the file and the field.
  static Result<ModelConfig> FromJsonText(const std::string& text,
                                          const std::string& path_for_errors);
  static Result<ModelConfig> FromFile(const std::string& path);
  // Writes a config.json that FromJsonText reads back to the same values.
  std::string ToJsonText() const;

  int q_dim() const { return num_heads * head_dim; }
  int kv_dim() const { return num_kv_heads * head_dim; }
  // Bytes of K+V for one token in one layer at the given element size.
  int64_t kv_bytes_per_token_layer(int elem_bytes) const {
    return int64_t{2} * kv_dim() * elem_bytes;
  }
};

}  // namespace ckv
