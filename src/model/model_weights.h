// Binds the tensors of a safetensors set to the transformer's named weights, checking that
// each has the exact shape the config implies.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "ckv/model_config.h"
#include "ckv/status.h"
#include "kernels/dtype.h"
#include "model/safetensors.h"

namespace ckv {

// Pointers into a SafetensorsSet, which must outlive them. Shapes are HF's [out, in].
struct LayerWeights {
  const TensorView* input_norm = nullptr;  // [hidden]
  const TensorView* q_proj = nullptr;      // [heads * head_dim, hidden]
  const TensorView* k_proj = nullptr;      // [kv_heads * head_dim, hidden]
  const TensorView* v_proj = nullptr;      // [kv_heads * head_dim, hidden]
  const TensorView* o_proj = nullptr;      // [hidden, heads * head_dim]
  const TensorView* q_bias = nullptr;      // nullptr when the model has no attention bias
  const TensorView* k_bias = nullptr;
  const TensorView* v_bias = nullptr;
  const TensorView* post_norm = nullptr;  // [hidden]
  const TensorView* gate_proj = nullptr;  // [inter, hidden]
  const TensorView* up_proj = nullptr;    // [inter, hidden]
  const TensorView* down_proj = nullptr;  // [hidden, inter]
};

struct ModelWeights {
  const TensorView* embed = nullptr;       // [vocab, hidden]
  const TensorView* final_norm = nullptr;  // [hidden]
  const TensorView* lm_head = nullptr;     // [vocab, hidden]; == embed when tied
  std::vector<LayerWeights> layers;
  DType matmul_dtype = DType::kF32;  // shared by embed, lm_head and every projection
};

// Every tensor the config requires, with its shape, in file order (embeddings, layers, final
// norm, lm_head unless tied).
std::vector<std::pair<std::string, std::vector<int64_t>>> ExpectedTensors(const ModelConfig& cfg);

// Errors name the tensor: missing, wrong shape, or a matmul weight whose dtype differs from the
// embedding's. Norms and biases may use any supported dtype.
Result<ModelWeights> BindWeights(const SafetensorsSet& set, const ModelConfig& cfg);

}  // namespace ckv
