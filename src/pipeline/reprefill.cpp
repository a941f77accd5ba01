// The Re-Prefill layer loop. It is policy-agnostic: per layer it projects the suffix, asks the
// KV source policy for the prefix KV, attends to it plus the suffix, and reports the
// attention back. Everything system-specific lives in the policies.
#include "ckv/reprefill.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "cache/chunk_cache.h"
#include "common/clock.h"
#include "engine/transformer.h"
#include "pipeline/emit_token.h"
#include "pipeline/kv_source_policy.h"
#include "pipeline/sequence.h"
#include "pipeline/system_registry.h"
#include "pipeline/trace.h"
#include "pipeline/unit_loader.h"

namespace ckv {
namespace {

using Clock = SteadyClock;

Result<CacheEviction> ParseEviction(const std::string& name) {
  if (name == "attention") return CacheEviction::kAttentionGuided;
  if (name == "lru") return CacheEviction::kLru;
  if (name == "impress") return CacheEviction::kImpressScore;
  return Status::InvalidArgument("cache policy \"" + name + "\" is not attention, lru or impress");
}

}  // namespace

ReprefillEngine::ReprefillEngine(std::unique_ptr<State> s) : s_(std::move(s)) {}
ReprefillEngine::~ReprefillEngine() = default;

Result<std::unique_ptr<ReprefillEngine>> ReprefillEngine::Create(const Model& model,
                                                                 PrefixStore& store,
                                                                 const Config& config) {
  auto s = std::make_unique<State>();
  s->model = &model;
  s->store = &store;
  s->config = config;
  if (config.cache_bytes > 0) {
    CKV_ASSIGN_OR_RETURN(CacheEviction ev, ParseEviction(config.cache_policy));
    s->cache = std::make_unique<ChunkCache>(config.cache_bytes, ev);
  }
  LoaderOptions lo;
  CKV_ASSIGN_OR_RETURN(lo.io.backend, io::ParseIoBackend(config.io_backend));
  if (config.io_queue_depth < 1) return Status::InvalidArgument("--queue-depth must be >= 1");
  if (config.prefetch_bytes < (int64_t{64} << 10)) {
    return Status::InvalidArgument("--prefetch-bytes must be at least 64 KiB");
  }
  lo.io.queue_depth = static_cast<uint32_t>(config.io_queue_depth);
  lo.buffer_bytes = static_cast<size_t>(config.prefetch_bytes);
  if (!(config.io_bandwidth_cap_mbps >= 0)) {
    return Status::InvalidArgument("--io-bandwidth-cap must be >= 0 MB/s (0 = off)");
  }
  lo.bandwidth_cap_bytes_per_s = config.io_bandwidth_cap_mbps * 1e6;
  CKV_ASSIGN_OR_RETURN(s->loader, UnitLoader::Create(lo, nullptr));
  return std::unique_ptr<ReprefillEngine>(new ReprefillEngine(std::move(s)));
}

int64_t ReprefillEngine::SequenceKVBytesBound(const ModelConfig& config, int64_t context_tokens,
                                              int max_tokens) {
  // K and V, bf16, every layer.
  return (context_tokens + max_tokens) * int64_t{config.kv_dim()} * 2 * 2 * config.num_layers;
}

Result<ReprefillResult> ReprefillEngine::Run(std::span<const int32_t> tokens,
                                             const ReprefillOptions& opts) {
  CKV_ASSIGN_OR_RETURN(std::unique_ptr<ReprefillSequence> seq, Begin(tokens, opts));
  CKV_RETURN_IF_ERROR(Prefill(*seq));
  ReprefillSequence* const one[1] = {seq.get()};
  while (!seq->finished()) CKV_RETURN_IF_ERROR(DecodeStep(one));
  return seq->TakeResult();
}

Result<std::unique_ptr<ReprefillSequence>> ReprefillEngine::Begin(std::span<const int32_t> tokens,
                                                                  const ReprefillOptions& opts) {
  const ModelConfig& cfg = s_->model->config();
  CKV_RETURN_IF_ERROR(ValidateSampling(opts.sampling));
  if (tokens.empty()) return Status::InvalidArgument("empty request: no tokens");
  if (!(opts.budget > 0.0 && opts.budget <= 1.0)) {
    return Status::InvalidArgument("--budget must be in (0, 1]");
  }
  if (opts.max_tokens < 1) return Status::InvalidArgument("--max-tokens must be >= 1");
  if (static_cast<int64_t>(tokens.size()) + opts.max_tokens > cfg.max_position_embeddings) {
    return Status::OutOfRange("request of " + std::to_string(tokens.size()) + " tokens plus " +
                              std::to_string(opts.max_tokens) +
                              " to generate exceeds the model's context of " +
                              std::to_string(cfg.max_position_embeddings));
  }
  for (int32_t id : tokens) {
    if (id < 0 || id >= cfg.vocab_size) {
      return Status::OutOfRange("token id " + std::to_string(id) + " is outside the vocabulary");
    }
  }
  const SystemSpec* system = FindSystem(opts.system);
  if (system == nullptr || system->policy != system->name) {
    return Status::InvalidArgument("--system \"" + opts.system +
                                   "\" is not one of the Re-Prefill systems (see "
                                   "ApplySystemName for aliases)");
  }
  auto impl = std::make_unique<ReprefillSequence::Impl>(s_.get(), opts);
  impl->tokens.assign(tokens.begin(), tokens.end());
  impl->stats.system = opts.system;
  return std::unique_ptr<ReprefillSequence>(new ReprefillSequence(std::move(impl)));
}

namespace {

using Impl = ReprefillSequence::Impl;

// Buffers for computing the last `ns` tokens of the context (all of them for a plain
// prefill), and their embeddings.
void AllocatePrefill(Impl& s, const Transformer& tf) {
  const ModelConfig& cfg = tf.config();
  const int64_t n = static_cast<int64_t>(s.tokens.size());
  s.ns = static_cast<int>(n - s.n_p);
  s.layer = 0;
  s.attended_tokens = 0;
  const int hidden = cfg.hidden_size, kv_dim = cfg.kv_dim(), q_dim = cfg.q_dim();
  const size_t cap = static_cast<size_t>(s.ns) + s.opts.max_tokens;
  s.suffix_k.assign(cfg.num_layers, {});
  s.suffix_v.assign(cfg.num_layers, {});
  for (int l = 0; l < cfg.num_layers; ++l) {
    s.suffix_k[l].resize(cap * kv_dim);
    s.suffix_v[l].resize(cap * kv_dim);
  }
  s.pos.resize(s.ns);
  for (int i = 0; i < s.ns; ++i) s.pos[i] = static_cast<int32_t>(s.n_p + i);
  const size_t rows = static_cast<size_t>(s.ns);
  s.x.resize(rows * hidden);
  s.q.resize(rows * q_dim);
  s.k.resize(rows * kv_dim);
  s.v.resize(rows * kv_dim);
  s.dctx = DecodeContext{};
  s.dctx.layers.resize(cfg.num_layers);
  tf.Embed(std::span<const int32_t>(s.tokens).subspan(s.n_p), s.x.data());
}

// A plain prefill of the whole context: no stored prefix matched, the system is recompute,
// or the stored prefix failed (`stats` then says so).
void StartPlainPrefill(Impl& s, const Transformer& tf, ReprefillStats stats) {
  s.policy.reset();
  s.n_p = 0;
  s.stats = std::move(stats);
  s.stats.prefix_tokens = 0;
  s.stats.suffix_tokens = static_cast<int64_t>(s.tokens.size());
  s.prefill_ms = 0;
  AllocatePrefill(s, tf);
}

// The first Prefill call: the longest stored prefix and the policy's first reads.
Status StartPrefill(Impl& s, const Model& model, PrefixStore& store, UnitLoader* loader,
                    ChunkCache* cache, const StoreLayout& layout) {
  s.started = true;
  const Transformer& tf = model.transformer();
  const SystemSpec* system = FindSystem(s.opts.system);
  ReprefillStats stats;
  stats.system = s.opts.system;
  if (system->make == nullptr) {
    StartPlainPrefill(s, tf, stats);
    return Status::OK();
  }
  auto match = store.FindLongestPrefix(tf.fingerprint(), layout, s.tokens);
  if (!match) {
    stats.note = "no stored prefix matches: plain prefill";
    StartPlainPrefill(s, tf, stats);
    return Status::OK();
  }
  auto handle = store.OpenPrefix(match->id);
  if (!handle.ok()) {
    stats.note =
        "stored prefix " + match->id + " unusable (" + handle.status().ToString() + "): recomputed";
    stats.stored_prefix_failed = true;
    StartPlainPrefill(s, tf, stats);
    return Status::OK();
  }
  // At least one token must be computed to produce logits.
  const int64_t n = static_cast<int64_t>(s.tokens.size());
  const int64_t n_p = std::min<int64_t>(match->n_tokens, n - 1);
  if (n_p <= 0) {
    StartPlainPrefill(s, tf, stats);
    return Status::OK();
  }
  const int c = (*handle)->chunk_tokens();
  s.prefix_id = match->id;
  s.n_p = n_p;
  stats.prefix_id = match->id;
  stats.prefix_tokens = n_p;
  stats.suffix_tokens = n - n_p;
  s.stats = std::move(stats);

  s.tracer = std::make_unique<Tracer>(!s.opts.trace_path.empty());
  loader->set_tracer(s.tracer.get());
  s.engine->prefilling = &s;
  s.loader_before = loader->stats();
  s.stats.io_backend = loader->backend();
  s.rc.config = &model.config();
  s.rc.prefix = *handle;
  s.rc.prefix_tokens = n_p;
  s.rc.n_chunks = (n_p + c - 1) / c;
  s.rc.opts = &s.opts;
  s.rc.loader = loader;
  s.rc.cache = cache;
  s.rc.tracer = s.tracer.get();
  s.policy = system->make();
  // Ended (waiting for its reads) on every path from here: ReleaseIoPath.
  s.policy_active = true;
  CKV_RETURN_IF_ERROR(s.policy->Begin(s.rc));
  s.observe_attention = cache != nullptr && cache->uses_attention_importance();
  AllocatePrefill(s, tf);
  return Status::OK();
}

// One layer of the suffix through the policy's prefix KV (or of a plain prefill).
Status PrefillLayer(Impl& s, const Transformer& tf) {
  const ModelConfig& cfg = tf.config();
  const int l = s.layer, ns = s.ns, kv_dim = cfg.kv_dim();
  Tracer* tracer = s.tracer.get();
  const double lb = tracer != nullptr ? tracer->NowUs() : 0;
  tf.ProjectQKV(l, s.x.data(), ns, s.pos.data(), s.q.data(), s.k.data(), s.v.data(), s.scratch);
  Transformer::StoreKVRows(s.k.data(), ns, kv_dim, DType::kBF16, s.suffix_k[l].data());
  Transformer::StoreKVRows(s.v.data(), ns, kv_dim, DType::kBF16, s.suffix_v[l].data());
  const KVSpan suffix{s.suffix_k[l].data(), s.suffix_v[l].data(), ns, s.n_p};
  if (s.policy == nullptr) {
    tf.AttendAndFinish(l, s.x.data(), ns, s.pos.data(), s.q.data(), DType::kBF16, {&suffix, 1},
                       s.scratch);
    return Status::OK();
  }
  CKV_ASSIGN_OR_RETURN(PrefixContext ctx,
                       s.policy->PrefixKV(l, s.q.data(), ns, s.pos.data(), suffix));
  std::vector<KVSpan> spans = ctx.spans;
  spans.push_back(suffix);
  int64_t prefix_keys = 0;
  for (const auto& sp : ctx.spans) prefix_keys += sp.n_tokens;
  s.attended_tokens += prefix_keys;
  // The attention mass per prefix key costs a second pass over the keys: computed only when
  // the cache ranks by it.
  std::vector<float> mass(s.observe_attention ? prefix_keys + ns : 0, 0.f);
  AttentionObserver obs{mass.data()};
  tf.AttendAndFinish(l, s.x.data(), ns, s.pos.data(), s.q.data(), DType::kBF16, spans, s.scratch,
                     s.observe_attention ? &obs : nullptr);
  if (s.observe_attention) ++s.stats.observed_layers;
  s.policy->Observe(l, ctx,
                    std::span<const float>(mass).first(s.observe_attention ? prefix_keys : 0));
  if (s.opts.max_tokens > 1 || s.opts.keep_exact_kv) {  // decoding or storing reads them
    auto& dl = s.dctx.layers[l];
    for (const auto& sp : ctx.spans) {
      const auto* kk = static_cast<const uint16_t*>(sp.k);
      const auto* vv = static_cast<const uint16_t*>(sp.v);
      dl.k.insert(dl.k.end(), kk, kk + sp.n_tokens * kv_dim);
      dl.v.insert(dl.v.end(), vv, vv + sp.n_tokens * kv_dim);
      dl.ranges.emplace_back(sp.pos_begin, sp.n_tokens);
    }
  }
  if (tracer != nullptr && tracer->enabled()) {
    tracer->Complete(Tracer::kCompute, "layer " + std::to_string(l), lb, tracer->NowUs(),
                     "{\"prefix_chunks\":" + std::to_string(ctx.spans.size()) + "}");
  }
  return Status::OK();
}

// After the last layer: logits, the first token, the request's I/O stats; then decoding.
void FinishPrefill(Impl& s, const Transformer& tf, UnitLoader* loader, double io_cap_mbps) {
  const ModelConfig& cfg = tf.config();
  const bool used_prefix = s.policy != nullptr;
  if (used_prefix) s.res.selections = s.policy->Selections();
  s.ReleaseIoPath();  // adds the policy's accounting (its I/O wait among it) to the stats
  s.stats.compute_ms = s.prefill_ms - s.stats.io_wait_ms;
  s.res.first_logits.resize(cfg.vocab_size);
  const int last_row[1] = {s.ns - 1};
  tf.Logits(s.x.data(), last_row, s.res.first_logits.data());
  if (s.opts.suffix_logits) {
    std::vector<int> rows(s.ns);
    for (int i = 0; i < s.ns; ++i) rows[i] = i;
    s.res.suffix_logits.resize(static_cast<size_t>(s.ns) * cfg.vocab_size);
    tf.Logits(s.x.data(), rows, s.res.suffix_logits.data());
  }
  ReprefillStats& stats = s.stats;
  s.next = s.sampler.Sample(s.res.first_logits);
  stats.ttft_ms = MsSince(s.t0);
  if (used_prefix) {
    const auto st = loader->stats();
    stats.buffer_overflows = st.pool_overflows - s.loader_before.pool_overflows;
    stats.buffers_registered = loader->buffers_registered();
    stats.io_bandwidth_cap_mbps = io_cap_mbps;
    stats.io_paced_ms = st.paced_ms - s.loader_before.paced_ms;
    stats.io_note = loader->registration_error();
    stats.prefetch_peak_bytes = static_cast<int64_t>(loader->pool().peak_in_use());
    stats.prefetch_capacity_bytes = static_cast<int64_t>(loader->pool().capacity());
    const int64_t from_ssd = stats.attended_ssd_bytes;
    const int64_t kv_read = stats.ssd_bytes_read;
    stats.ssd_bytes_read += stats.scoring_bytes_read;
    stats.read_amplification = from_ssd > 0 ? static_cast<double>(kv_read) / from_ssd : 0.0;
    stats.granularity_amplification =
        from_ssd > 0 ? static_cast<double>(kv_read - stats.speculative_bytes_wasted) / from_ssd
                     : 0.0;
    stats.attended_fraction =
        static_cast<double>(s.attended_tokens) / (static_cast<double>(s.n_p) * cfg.num_layers);
  }
  s.ReleasePrefillActivations();  // decoding does not need them
  const int kv_dim = cfg.kv_dim();
  for (auto& dl : s.dctx.layers) {
    int64_t off = 0;
    for (auto [p0, nt] : dl.ranges) {
      dl.spans.push_back({dl.k.data() + off * kv_dim, dl.v.data() + off * kv_dim, nt, p0});
      off += nt;
    }
  }
  s.len = s.ns;
  s.phase = ReprefillSequence::Phase::kDecode;
  const auto e0 = SteadyClock::now();
  const bool more = EmitToken(s.next, cfg, s.opts, s.res, stats);
  stats.decode_ms += MsSince(e0);
  s.emitted = 1;
  if (!more || s.emitted >= s.opts.max_tokens) s.Finish();
}

}  // namespace

Status ReprefillEngine::Prefill(ReprefillSequence& seq, int max_layers) {
  Impl& s = *seq.impl_;
  if (s.engine != s_.get()) {
    return Status::InvalidArgument("the sequence belongs to another engine");
  }
  if (s.phase != ReprefillSequence::Phase::kPrefill) return Status::OK();
  if (s.cancelled) {
    s.ReleaseIoPath();
    s.stats.cancelled = true;
    s.Finish();
    return Status::OK();
  }
  if (max_layers < 0) return Status::InvalidArgument("max_layers must be >= 0");
  const Model& model = *s_->model;
  const Transformer& tf = model.transformer();
  const int n_layers = model.config().num_layers;
  auto call_t0 = SteadyClock::now();
  if (!s.started) {
    if (s_->prefilling != nullptr && s_->prefilling != &s) {
      return Status::Unavailable(
          "another sequence is in its prefill on this engine: one at a time");
    }
    Status st =
        StartPrefill(s, model, *s_->store, s_->loader.get(), s_->cache.get(), s_->config.layout);
    if (!st.ok()) {
      s.ReleaseIoPath();
      return st;
    }
  }
  for (int done = 0; s.layer < n_layers && (max_layers == 0 || done < max_layers); ++done) {
    Status st = PrefillLayer(s, tf);
    if (st.ok()) {
      ++s.layer;
      continue;
    }
    // Truncated, unreadable or corrupt stored data: quarantine the prefix (a checksum failure
    // already did), serve the request by recomputing it, and say so. Other failures (the I/O
    // engine itself: kUnavailable) are not the data's: the prefix stays.
    s.ReleaseIoPath();
    const bool data_failed =
        st.code() == StatusCode::kCorruption || st.code() == StatusCode::kIOError;
    if (data_failed && s_->store->Info(s.prefix_id).ok()) {
      (void)s_->store->Quarantine(s.prefix_id, st.message());
    }
    ReprefillStats fresh;
    fresh.system = s.opts.system;
    fresh.note = "stored prefix " + s.prefix_id + " failed (" + st.ToString() + "): recomputed";
    fresh.stored_prefix_failed = true;
    StartPlainPrefill(s, tf, std::move(fresh));
    call_t0 = SteadyClock::now();  // the recompute's compute time starts here
  }
  s.prefill_ms += MsSince(call_t0);
  if (s.layer == n_layers) {
    FinishPrefill(s, tf, s_->loader.get(), s_->config.io_bandwidth_cap_mbps);
  }
  return Status::OK();
}

}  // namespace ckv
