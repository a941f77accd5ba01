// The transformer forward pass, split into the steps the layer loops need: embedding,
// one decoder layer (attending to caller-provided KV spans), final norm + output head.
// Both the plain forward (Model::Forward) and the Re-Prefill pipeline drive these steps.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "ckv/model_config.h"
#include "ckv/status.h"
#include "kernels/attention.h"
#include "kernels/linear.h"
#include "kernels/ops.h"
#include "model/model_weights.h"
#include "model/safetensors.h"

namespace ckv {

// Reusable activation buffers for one sequence's forward pass: a layer needs ~10 buffers of
// n x intermediate floats, and allocating (and page-faulting) them per layer costs more than
// the small matmuls. Contents are uninitialized.
class Scratch {
 public:
  enum Slot { kNormed, kQ, kK, kV, kAttn, kTmp, kGate, kUp, kSlots };
  float* F32(Slot slot, size_t n);
  uint16_t* Bf16(size_t n);  // one bf16 buffer: the shared rounded input of a Linear group

 private:
  struct Buf {
    std::unique_ptr<float[]> data;
    size_t size = 0;
  };
  Buf f32_[kSlots];
  std::unique_ptr<uint16_t[]> bf16_;
  size_t bf16_size_ = 0;
};

struct TransformerOptions {
  bool pack_weights = false;
};

class Transformer {
 public:
  static Result<std::unique_ptr<Transformer>> Create(SafetensorsSet tensors,
                                                     const ModelConfig& config,
                                                     const TransformerOptions& opts);

  const ModelConfig& config() const { return config_; }
  DType weight_dtype() const { return weight_dtype_; }
  // Hash of config and tensor names/shapes/dtypes plus sampled weight bytes.
  uint64_t fingerprint() const { return fingerprint_; }

  // x[n][hidden] = embedding rows of `tokens` (ids must be < vocab_size).
  void Embed(std::span<const int32_t> tokens, float* x) const;

  // Where a layer writes the K/V of its new tokens (rows of kv_dim elements of kv_dtype).
  struct NewKV {
    void* k = nullptr;
    void* v = nullptr;
  };

  // One decoder layer on the hidden states x[n][hidden] (updated in place) of tokens at
  // `positions`. Their keys (after RoPE) and values are written to `out_kv`; attention runs
  // over `context` (spans that must already include the new tokens' own span, since the
  // rows written to out_kv are what the spans point at). `observer` (optional) receives
  // the attention mass per context key.
  void Layer(int layer, float* x, int n, const int32_t* positions, NewKV out_kv, DType kv_dtype,
             std::span<const KVSpan> context, Scratch& scratch,
             AttentionObserver* observer = nullptr) const;

  // Layer() in two steps, for loops that must look at the queries before choosing the
  // context (Re-Prefill): first Q/K/V projection + RoPE of x's normalized rows into
  // q[n][q_dim], k[n][kv_dim], v[n][kv_dim] (float32)...
  void ProjectQKV(int layer, const float* x, int n, const int32_t* positions, float* q, float* k,
                  float* v, Scratch& scratch) const;
  // ...then attention of q over `context`, output projection, MLP and both residuals (x is
  // updated in place). q is the ProjectQKV output and is not modified.
  void AttendAndFinish(int layer, float* x, int n, const int32_t* positions, const float* q,
                       DType kv_dtype, std::span<const KVSpan> context, Scratch& scratch,
                       AttentionObserver* observer = nullptr) const;
  // The same for rows of different sequences (a decode batch): row r attends only to
  // contexts[r]; the output projection and MLP run once over all rows (one pass over the
  // weights). With one row it computes exactly what AttendAndFinish does.
  void AttendEachAndFinish(int layer, float* x, int n, const int32_t* positions, const float* q,
                           DType kv_dtype, std::span<const std::vector<KVSpan>> contexts,
                           Scratch& scratch) const;

  // Rounds float32 K or V rows into the KV dtype (bf16 or f32) at dst.
  static void StoreKVRows(const float* src, int n, int dim, DType dtype, void* dst);

  // logits[r][vocab] for the given rows of x (final norm applied here).
  void Logits(const float* x, std::span<const int> rows, float* logits) const;

 private:
  Transformer() = default;
  // Output projection of attn[n][q_dim], MLP and both residuals (x updated in place).
  void FinishLayer(int layer, float* x, int n, const float* attn, Scratch& scratch) const;

  struct LayerParams {
    std::vector<float> input_norm, post_norm, q_bias, k_bias, v_bias;
    std::unique_ptr<Linear> q, k, v, o, gate, up, down;
  };

  ModelConfig config_;
  SafetensorsSet tensors_;
  ModelWeights weights_;
  DType weight_dtype_ = DType::kF32;
  std::vector<LayerParams> layers_;
  std::vector<float> final_norm_;
  std::unique_ptr<Linear> lm_head_;
  std::unique_ptr<RopeTable> rope_;
  uint64_t fingerprint_ = 0;
};

}  // namespace ckv
