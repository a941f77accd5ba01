// The one seam between the Re-Prefill layer loop and the systems it compares: for each layer
// the loop asks the policy for the prefix KV to attend to, and reports back the attention it
// observed. What to select, what to read, when to prefetch and what to cache is the policy's.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "cache/chunk_cache.h"
#include "ckv/model_config.h"
#include "ckv/prefix_store.h"
#include "ckv/reprefill.h"
#include "kernels/attention.h"
#include "pipeline/trace.h"
#include "pipeline/unit_loader.h"

namespace ckv {

struct RequestContext {
  const ModelConfig* config = nullptr;
  std::shared_ptr<const PrefixHandle> prefix;
  int64_t prefix_tokens = 0;  // tokens of the stored prefix used (<= prefix->n_tokens())
  int64_t n_chunks = 0;       // chunks covering prefix_tokens
  const ReprefillOptions* opts = nullptr;
  UnitLoader* loader = nullptr;
  ChunkCache* cache = nullptr;  // may be null
  Tracer* tracer = nullptr;
};

// What a policy read, attended and decided for one request, in the units of ReprefillStats
// (whose comments define each field, once for every system). The policy returns it from End
// and the engine adds it to the request's stats: no policy writes the stats itself.
struct PolicyAccounting {
  double io_wait_ms = 0;
  double scoring_ms = 0;
  int64_t ssd_bytes_read = 0;  // KV read for attention (speculation included), scoring apart
  int64_t scoring_bytes_read = 0;
  int64_t cache_bytes_hit = 0;
  int64_t scoring_bytes_hit = 0;
  int64_t attended_bytes = 0;
  int64_t attended_ssd_bytes = 0;
  int64_t speculative_bytes_wasted = 0;
  int64_t chunks_selected = 0;
  int64_t chunks_prefetched = 0;
  int64_t chunks_mispredicted = 0;
  int64_t cache_hits = 0;
  int64_t cache_misses = 0;
  int64_t speculative_errors = 0;
  int probe_layers = 0;
  int probe_vote_layers = 0;
  std::string note;

  void AddTo(ReprefillStats& s) const {
    s.io_wait_ms += io_wait_ms;
    s.scoring_ms += scoring_ms;
    s.ssd_bytes_read += ssd_bytes_read;
    s.scoring_bytes_read += scoring_bytes_read;
    s.cache_bytes_hit += cache_bytes_hit;
    s.scoring_bytes_hit += scoring_bytes_hit;
    s.attended_bytes += attended_bytes;
    s.attended_ssd_bytes += attended_ssd_bytes;
    s.speculative_bytes_wasted += speculative_bytes_wasted;
    s.chunks_selected += chunks_selected;
    s.chunks_prefetched += chunks_prefetched;
    s.chunks_mispredicted += chunks_mispredicted;
    s.cache_hits += cache_hits;
    s.cache_misses += cache_misses;
    s.speculative_errors += speculative_errors;
    s.probe_layers += probe_layers;
    s.probe_vote_layers += probe_vote_layers;
    if (!note.empty()) s.note = note;
  }
};

// Prefix KV of one layer: spans in position order, and what keeps their memory alive.
struct PrefixContext {
  std::vector<KVSpan> spans;
  std::vector<int64_t> chunks;  // chunk index of each span
  std::vector<std::shared_ptr<const void>> keep_alive;
};

class KVSourcePolicy {
 public:
  virtual ~KVSourcePolicy() = default;
  virtual Status Begin(const RequestContext& ctx) = 0;
  // Layer `layer`'s prefix KV (blocks until it is in memory). `q` are the suffix queries of
  // this layer with RoPE applied ([n_q][num_heads * head_dim]), `suffix_keys` the suffix's
  // keys, for policies that score chunks by attention.
  virtual Result<PrefixContext> PrefixKV(int layer, const float* q, int n_q, const int32_t* q_pos,
                                         const KVSpan& suffix_keys) = 0;
  // Attention mass the suffix gave each prefix token of `ctx` (span order). Called for every
  // layer; `mass` is empty when nothing uses it (the engine's cache does not rank by attention,
  // see ChunkCache::uses_attention_importance), so no system pays the observer pass for
  // nothing.
  virtual void Observe(int layer, const PrefixContext& ctx, std::span<const float> mass) = 0;
  // After the last layer (or on an error): release what the request held, feed the cache,
  // and return what this request read and decided. Waits for every read it issued.
  virtual PolicyAccounting End() = 0;
  // The selections made, per period / layer group (for tests and stats).
  virtual std::vector<std::vector<int64_t>> Selections() const = 0;
};

std::unique_ptr<KVSourcePolicy> MakeContiguousKVPolicy();
std::unique_ptr<KVSourcePolicy> MakeAsLruPolicy();
std::unique_ptr<KVSourcePolicy> MakeAsH2OLruPolicy();
std::unique_ptr<KVSourcePolicy> MakeImpressPolicy();

// Adds the attention mass each span of `ctx` received (mass in span order) to its chunk's
// importance.
template <typename Map>
void AccumulateChunkMass(const PrefixContext& ctx, std::span<const float> mass, Map& importance) {
  size_t t = 0;
  for (size_t s = 0; s < ctx.spans.size(); ++s) {
    double sum = 0;
    for (int64_t i = 0; i < ctx.spans[s].n_tokens && t < mass.size(); ++i) sum += mass[t++];
    importance[ctx.chunks[s]] += sum;
  }
}

}  // namespace ckv
