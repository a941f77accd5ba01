// What a ReprefillEngine and each of its sequences hold. Internal to the pipeline: reprefill.cpp
// runs a sequence's prefill, decode_step.cpp its decoding (alone or in a batch).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "cache/chunk_cache.h"
#include "ckv/generate.h"
#include "ckv/reprefill.h"
#include "common/clock.h"
#include "engine/transformer.h"
#include "pipeline/kv_source_policy.h"
#include "pipeline/trace.h"
#include "pipeline/unit_loader.h"

namespace ckv {

struct ReprefillEngine::State {
  const Model* model = nullptr;
  PrefixStore* store = nullptr;
  Config config;
  std::unique_ptr<ChunkCache> cache;
  // Kept across requests: creating a ring and registering its buffers (pinning memory) costs
  // far more than a request's I/O.
  std::unique_ptr<UnitLoader> loader;
  // The sequence whose prefill owns the I/O path now (its policy's reads, the loader's tracer).
  ReprefillSequence::Impl* prefilling = nullptr;
  Scratch decode_scratch;  // activations of a decode batch (one batch at a time)
};

// The selected prefix rows of every layer, copied into compact buffers as the prefill goes,
// so decoding continues with the same selection after the prefetch buffers are released.
struct DecodeContext {
  struct Layer {
    std::vector<uint16_t> k, v;
    std::vector<KVSpan> spans;                        // into k/v, filled once all rows are copied
    std::vector<std::pair<int64_t, int64_t>> ranges;  // (pos_begin, n_tokens) per span
  };
  std::vector<Layer> layers;
  int64_t bytes() const {
    int64_t b = 0;
    for (const auto& l : layers) b += static_cast<int64_t>((l.k.size() + l.v.size()) * 2);
    return b;
  }
};

struct ReprefillSequence::Impl {
  explicit Impl(ReprefillEngine::State* e, const ReprefillOptions& o)
      : engine(e), opts(o), sampler(o.sampling) {}
  ~Impl();

  // Ends the policy (waiting for the reads it issued) and gives the I/O path back.
  void ReleaseIoPath();
  // Frees the prefill's activations (x, q, k, v, positions, scratch).
  void ReleasePrefillActivations();
  // The request is done: final stats into the result, trace written.
  void Finish();

  ReprefillEngine::State* engine;
  std::vector<int32_t> tokens;
  ReprefillOptions opts;
  SteadyClock::time_point t0 = SteadyClock::now();
  Phase phase = Phase::kPrefill;
  bool started = false;  // the prefill's first call has run (prefix looked up)
  bool cancelled = false;
  ReprefillResult res;
  ReprefillStats stats;

  // Prefill. With no stored prefix (recompute) n_p is 0 and the "suffix" is the whole context.
  std::unique_ptr<Tracer> tracer;
  LoaderStats loader_before;
  std::string prefix_id;
  RequestContext rc;
  std::unique_ptr<KVSourcePolicy> policy;  // null for a plain prefill
  bool policy_active = false;              // Begin called, End not yet
  bool observe_attention = false;
  int64_t n_p = 0;
  int ns = 0;     // suffix tokens computed by the prefill
  int layer = 0;  // next layer to prefill
  std::vector<int32_t> pos;
  std::vector<float> x, q, k, v;
  Scratch scratch;
  int64_t attended_tokens = 0;
  double prefill_ms = 0;  // time inside Prefill calls (compute_ms = this - io_wait_ms)

  // Suffix and generated tokens' K/V per layer (bf16, room for ns + max_tokens rows), and the
  // selected prefix rows.
  std::vector<std::vector<uint16_t>> suffix_k, suffix_v;
  DecodeContext dctx;

  // Decode.
  Sampler sampler;
  int32_t next = -1;  // sampled, emitted, not yet run through the model
  int64_t len = 0;    // suffix rows written (ns + tokens decoded)
  int emitted = 0;
};

// The sequence's KV as an exact context when every layer attended every prefix row (see
// ExactContextKV); null otherwise, or when it was cancelled. Call before Finish frees it.
std::shared_ptr<const ExactContextKV> ExactKVOf(const ReprefillSequence::Impl& s, int kv_dim);

}  // namespace ckv
