#include "model/model_weights.h"

namespace ckv {
namespace {

std::string LayerPrefix(int layer) {
  return "model.layers." + std::to_string(layer) + ".";
}

}  // namespace

std::vector<std::pair<std::string, std::vector<int64_t>>> ExpectedTensors(const ModelConfig& cfg) {
  const int64_t hidden = cfg.hidden_size, inter = cfg.intermediate_size;
  const int64_t q = cfg.q_dim(), kv = cfg.kv_dim(), vocab = cfg.vocab_size;
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  out.push_back({"model.embed_tokens.weight", {vocab, hidden}});
  for (int l = 0; l < cfg.num_layers; ++l) {
    const std::string p = LayerPrefix(l);
    out.push_back({p + "input_layernorm.weight", {hidden}});
    out.push_back({p + "self_attn.q_proj.weight", {q, hidden}});
    out.push_back({p + "self_attn.k_proj.weight", {kv, hidden}});
    out.push_back({p + "self_attn.v_proj.weight", {kv, hidden}});
    if (cfg.attention_bias) {
      out.push_back({p + "self_attn.q_proj.bias", {q}});
      out.push_back({p + "self_attn.k_proj.bias", {kv}});
      out.push_back({p + "self_attn.v_proj.bias", {kv}});
    }
    out.push_back({p + "self_attn.o_proj.weight", {hidden, q}});
    out.push_back({p + "post_attention_layernorm.weight", {hidden}});
    out.push_back({p + "mlp.gate_proj.weight", {inter, hidden}});
    out.push_back({p + "mlp.up_proj.weight", {inter, hidden}});
    out.push_back({p + "mlp.down_proj.weight", {hidden, inter}});
  }
  out.push_back({"model.norm.weight", {hidden}});
  if (!cfg.tie_word_embeddings) out.push_back({"lm_head.weight", {vocab, hidden}});
  return out;
}

Result<ModelWeights> BindWeights(const SafetensorsSet& set, const ModelConfig& cfg) {
  ModelWeights w;
  // Kernels are instantiated per weight dtype, so all matmul operands must agree.
  auto matmul = [&](const std::string& name,
                    const std::vector<int64_t>& shape) -> Result<const TensorView*> {
    CKV_ASSIGN_OR_RETURN(const TensorView* t, set.Require(name, shape));
    if (w.embed != nullptr && t->dtype != w.matmul_dtype) {
      return Status::Unsupported("tensor " + name + " in " + t->file + " has dtype " +
                                 DTypeName(t->dtype) + " but model.embed_tokens.weight is " +
                                 DTypeName(w.matmul_dtype) +
                                 "; all matmul weights must share one dtype");
    }
    return t;
  };
  const int64_t hidden = cfg.hidden_size, inter = cfg.intermediate_size;
  const int64_t q = cfg.q_dim(), kv = cfg.kv_dim(), vocab = cfg.vocab_size;

  CKV_ASSIGN_OR_RETURN(w.embed, matmul("model.embed_tokens.weight", {vocab, hidden}));
  w.matmul_dtype = w.embed->dtype;
  w.layers.resize(cfg.num_layers);
  for (int l = 0; l < cfg.num_layers; ++l) {
    const std::string p = LayerPrefix(l);
    LayerWeights& lw = w.layers[l];
    CKV_ASSIGN_OR_RETURN(lw.input_norm, set.Require(p + "input_layernorm.weight", {hidden}));
    CKV_ASSIGN_OR_RETURN(lw.q_proj, matmul(p + "self_attn.q_proj.weight", {q, hidden}));
    CKV_ASSIGN_OR_RETURN(lw.k_proj, matmul(p + "self_attn.k_proj.weight", {kv, hidden}));
    CKV_ASSIGN_OR_RETURN(lw.v_proj, matmul(p + "self_attn.v_proj.weight", {kv, hidden}));
    if (cfg.attention_bias) {
      CKV_ASSIGN_OR_RETURN(lw.q_bias, set.Require(p + "self_attn.q_proj.bias", {q}));
      CKV_ASSIGN_OR_RETURN(lw.k_bias, set.Require(p + "self_attn.k_proj.bias", {kv}));
      CKV_ASSIGN_OR_RETURN(lw.v_bias, set.Require(p + "self_attn.v_proj.bias", {kv}));
    }
    CKV_ASSIGN_OR_RETURN(lw.o_proj, matmul(p + "self_attn.o_proj.weight", {hidden, q}));
    CKV_ASSIGN_OR_RETURN(lw.post_norm,
                         set.Require(p + "post_attention_layernorm.weight", {hidden}));
    CKV_ASSIGN_OR_RETURN(lw.gate_proj, matmul(p + "mlp.gate_proj.weight", {inter, hidden}));
    CKV_ASSIGN_OR_RETURN(lw.up_proj, matmul(p + "mlp.up_proj.weight", {inter, hidden}));
    CKV_ASSIGN_OR_RETURN(lw.down_proj, matmul(p + "mlp.down_proj.weight", {hidden, inter}));
  }
  CKV_ASSIGN_OR_RETURN(w.final_norm, set.Require("model.norm.weight", {hidden}));
  if (cfg.tie_word_embeddings) {
    w.lm_head = w.embed;  // a stray lm_head.weight in a tied checkpoint is ignored, as HF does
  } else {
    CKV_ASSIGN_OR_RETURN(w.lm_head, matmul("lm_head.weight", {vocab, hidden}));
  }
  return w;
}

}  // namespace ckv
