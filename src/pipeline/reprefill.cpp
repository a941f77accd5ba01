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
#include "pipeline/kv_source_policy.h"
#include "pipeline/recompute.h"
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

// The selected prefix rows of every layer, copied into compact buffers as the prefill goes,
// so decoding continues with the same selection after the prefetch buffers are released.
struct DecodeContext {
  struct Layer {
    std::vector<uint16_t> k, v;
    std::vector<KVSpan> spans;                        // into k/v, filled once all rows are copied
    std::vector<std::pair<int64_t, int64_t>> ranges;  // (pos_begin, n_tokens) per span
  };
  std::vector<Layer> layers;
};

}  // namespace

struct ReprefillEngine::State {
  const Model* model = nullptr;
  PrefixStore* store = nullptr;
  Config config;
  std::unique_ptr<ChunkCache> cache;
  // Kept across requests: creating a ring and registering its buffers (pinning memory) costs
  // far more than a request's I/O.
  std::unique_ptr<UnitLoader> loader;
};

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

Result<ReprefillResult> ReprefillEngine::Run(std::span<const int32_t> tokens,
                                             const ReprefillOptions& opts) {
  const auto t0 = Clock::now();
  const Model& model = *s_->model;
  const ModelConfig& cfg = model.config();
  const Transformer& tf = model.transformer();
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
  ReprefillStats stats;
  stats.system = opts.system;
  const SystemSpec* system = FindSystem(opts.system);
  if (system == nullptr || system->policy != system->name) {
    return Status::InvalidArgument("--system \"" + opts.system +
                                   "\" is not one of the Re-Prefill systems (see "
                                   "ApplySystemName for aliases)");
  }
  if (system->make == nullptr) return Recompute(model, tokens, opts, stats, t0);
  std::unique_ptr<KVSourcePolicy> policy = system->make();

  auto match = s_->store->FindLongestPrefix(tf.fingerprint(), s_->config.layout, tokens);
  if (!match) {
    stats.note = "no stored prefix matches: plain prefill";
    return Recompute(model, tokens, opts, stats, t0);
  }
  auto handle = s_->store->OpenPrefix(match->id);
  if (!handle.ok()) {
    stats.note =
        "stored prefix " + match->id + " unusable (" + handle.status().ToString() + "): recomputed";
    stats.stored_prefix_failed = true;
    return Recompute(model, tokens, opts, stats, t0);
  }
  // At least one token must be computed to produce logits.
  const int64_t n = static_cast<int64_t>(tokens.size());
  const int64_t n_p = std::min<int64_t>(match->n_tokens, n - 1);
  if (n_p <= 0) return Recompute(model, tokens, opts, stats, t0);
  const int c = (*handle)->chunk_tokens();
  stats.prefix_id = match->id;
  stats.prefix_tokens = n_p;
  stats.suffix_tokens = n - n_p;

  Tracer tracer(!opts.trace_path.empty());
  UnitLoader* loader = s_->loader.get();
  loader->set_tracer(&tracer);
  struct TracerReset {
    UnitLoader* l;
    ~TracerReset() { l->set_tracer(nullptr); }
  } tracer_reset{loader};
  const LoaderStats stats_before = loader->stats();
  stats.io_backend = loader->backend();

  RequestContext rc;
  rc.config = &cfg;
  rc.prefix = *handle;
  rc.prefix_tokens = n_p;
  rc.n_chunks = (n_p + c - 1) / c;
  rc.opts = &opts;
  rc.loader = loader;
  rc.cache = s_->cache.get();
  rc.tracer = &tracer;
  rc.stats = &stats;
  // Every exit ends the policy, which waits for the reads it issued: none may still be running
  // (and writing this request's trace and stats) once Run returns. Declared after the tracer,
  // so it runs first.
  struct EndPolicy {
    KVSourcePolicy* policy;
    bool ended = false;
    void operator()() {
      if (!ended) policy->End();
      ended = true;
    }
    ~EndPolicy() { (*this)(); }
  } end_policy{policy.get()};
  CKV_RETURN_IF_ERROR(policy->Begin(rc));
  const bool observe_attention = rc.cache != nullptr && rc.cache->uses_attention_importance();

  // Suffix state.
  const int ns = static_cast<int>(n - n_p);
  const int hidden = cfg.hidden_size, kv_dim = cfg.kv_dim(), q_dim = cfg.q_dim();
  const int64_t cap = ns + opts.max_tokens;
  std::vector<std::vector<uint16_t>> suffix_k(cfg.num_layers), suffix_v(cfg.num_layers);
  for (int l = 0; l < cfg.num_layers; ++l) {
    suffix_k[l].resize(static_cast<size_t>(cap) * kv_dim);
    suffix_v[l].resize(static_cast<size_t>(cap) * kv_dim);
  }
  std::vector<int32_t> pos(ns);
  for (int i = 0; i < ns; ++i) pos[i] = static_cast<int32_t>(n_p + i);
  std::vector<float> x(static_cast<size_t>(ns) * hidden);
  std::vector<float> q(static_cast<size_t>(ns) * q_dim), k(static_cast<size_t>(ns) * kv_dim),
      v(static_cast<size_t>(ns) * kv_dim);
  Scratch scratch;
  DecodeContext dctx;
  dctx.layers.resize(cfg.num_layers);
  int64_t attended_tokens = 0;

  const auto compute_t0 = Clock::now();
  tf.Embed(tokens.subspan(n_p), x.data());
  Status failure;
  for (int l = 0; l < cfg.num_layers && failure.ok(); ++l) {
    const double lb = tracer.NowUs();
    tf.ProjectQKV(l, x.data(), ns, pos.data(), q.data(), k.data(), v.data(), scratch);
    Transformer::StoreKVRows(k.data(), ns, kv_dim, DType::kBF16, suffix_k[l].data());
    Transformer::StoreKVRows(v.data(), ns, kv_dim, DType::kBF16, suffix_v[l].data());
    const KVSpan suffix{suffix_k[l].data(), suffix_v[l].data(), ns, n_p};
    auto ctx = policy->PrefixKV(l, q.data(), ns, pos.data(), suffix);
    if (!ctx.ok()) {
      failure = ctx.status();
      break;
    }
    std::vector<KVSpan> spans = ctx->spans;
    spans.push_back(suffix);
    int64_t prefix_keys = 0;
    for (const auto& s : ctx->spans) prefix_keys += s.n_tokens;
    attended_tokens += prefix_keys;
    // The attention mass per prefix key costs a second pass over the keys: computed only when
    // the cache ranks by it.
    std::vector<float> mass(observe_attention ? prefix_keys + ns : 0, 0.f);
    AttentionObserver obs{mass.data()};
    tf.AttendAndFinish(l, x.data(), ns, pos.data(), q.data(), DType::kBF16, spans, scratch,
                       observe_attention ? &obs : nullptr);
    if (observe_attention) ++stats.observed_layers;
    policy->Observe(l, *ctx,
                    std::span<const float>(mass).first(observe_attention ? prefix_keys : 0));
    if (opts.max_tokens > 1) {
      auto& dl = dctx.layers[l];
      for (const auto& s : ctx->spans) {
        const auto* kk = static_cast<const uint16_t*>(s.k);
        const auto* vv = static_cast<const uint16_t*>(s.v);
        dl.k.insert(dl.k.end(), kk, kk + s.n_tokens * kv_dim);
        dl.v.insert(dl.v.end(), vv, vv + s.n_tokens * kv_dim);
        dl.ranges.emplace_back(s.pos_begin, s.n_tokens);
      }
    }
    if (tracer.enabled()) {
      tracer.Complete(Tracer::kCompute, "layer " + std::to_string(l), lb, tracer.NowUs(),
                      "{\"prefix_chunks\":" + std::to_string(ctx->spans.size()) + "}");
    }
  }
  end_policy();
  if (!failure.ok()) {
    // Truncated, unreadable or corrupt stored data: quarantine the prefix (a checksum failure
    // already did), serve the request by recomputing it, and say so. Other failures (the I/O
    // engine itself: kUnavailable) are not the data's: the prefix stays.
    const bool data_failed =
        failure.code() == StatusCode::kCorruption || failure.code() == StatusCode::kIOError;
    if (data_failed && s_->store->Info(match->id).ok()) {
      (void)s_->store->Quarantine(match->id, failure.message());
    }
    stats.note = "stored prefix " + match->id + " failed (" + failure.ToString() + "): recomputed";
    ReprefillStats fresh;
    fresh.system = opts.system;
    fresh.note = stats.note;
    fresh.stored_prefix_failed = true;
    return Recompute(model, tokens, opts, fresh, t0);
  }

  ReprefillResult res;
  res.selections = policy->Selections();
  res.first_logits.resize(cfg.vocab_size);
  const int last_row[1] = {ns - 1};
  tf.Logits(x.data(), last_row, res.first_logits.data());
  if (opts.suffix_logits) {
    std::vector<int> rows(ns);
    for (int i = 0; i < ns; ++i) rows[i] = i;
    res.suffix_logits.resize(static_cast<size_t>(ns) * cfg.vocab_size);
    tf.Logits(x.data(), rows, res.suffix_logits.data());
  }
  stats.compute_ms = MsSince(compute_t0) - stats.io_wait_ms;
  Sampler sampler(opts.sampling);
  int32_t next = sampler.Sample(res.first_logits);
  stats.ttft_ms = MsSince(t0);
  const auto st = loader->stats();
  stats.buffer_overflows = st.pool_overflows - stats_before.pool_overflows;
  stats.buffers_registered = loader->buffers_registered();
  stats.io_bandwidth_cap_mbps = s_->config.io_bandwidth_cap_mbps;
  stats.io_paced_ms = st.paced_ms - stats_before.paced_ms;
  stats.io_note = loader->registration_error();
  stats.prefetch_peak_bytes = static_cast<int64_t>(loader->pool().peak_in_use());
  stats.prefetch_capacity_bytes = static_cast<int64_t>(loader->pool().capacity());
  const int64_t from_ssd = stats.attended_ssd_bytes;
  const int64_t kv_read = stats.ssd_bytes_read;
  stats.ssd_bytes_read += stats.scoring_bytes_read;
  stats.read_amplification = from_ssd > 0 ? static_cast<double>(kv_read) / from_ssd : 0.0;
  stats.granularity_amplification =
      from_ssd > 0 ? static_cast<double>(kv_read - stats.speculative_bytes_wasted) / from_ssd : 0.0;
  stats.attended_fraction =
      static_cast<double>(attended_tokens) / (static_cast<double>(n_p) * cfg.num_layers);

  // Decode with the same prefix selection.
  const auto d0 = Clock::now();
  std::vector<float> logits;
  int64_t len = ns;
  for (int step = 0; step < opts.max_tokens; ++step) {
    if (!EmitToken(next, cfg, opts, res, stats)) break;
    if (step + 1 == opts.max_tokens) break;
    if (step == 0) {
      for (auto& dl : dctx.layers) {
        int64_t off = 0;
        for (auto [p0, nt] : dl.ranges) {
          dl.spans.push_back({dl.k.data() + off * kv_dim, dl.v.data() + off * kv_dim, nt, p0});
          off += nt;
        }
      }
    }
    const int32_t tok[1] = {next};
    const int32_t p1[1] = {static_cast<int32_t>(n_p + len)};
    std::vector<float> x1(hidden);
    tf.Embed(tok, x1.data());
    for (int l = 0; l < cfg.num_layers; ++l) {
      auto& dl = dctx.layers[l];
      Transformer::NewKV out{suffix_k[l].data() + len * kv_dim, suffix_v[l].data() + len * kv_dim};
      std::vector<KVSpan> spans = dl.spans;
      spans.push_back({suffix_k[l].data(), suffix_v[l].data(), len + 1, n_p});
      tf.Layer(l, x1.data(), 1, p1, out, DType::kBF16, spans, scratch);
    }
    ++len;
    logits.resize(cfg.vocab_size);
    const int row0[1] = {0};
    tf.Logits(x1.data(), row0, logits.data());
    next = sampler.Sample(logits);
  }
  stats.decode_ms = MsSince(d0);
  res.stats = std::move(stats);
  if (!opts.trace_path.empty()) {
    // The answer stands without its trace.
    if (Status ts = tracer.WriteJson(opts.trace_path); !ts.ok()) {
      res.stats.note += (res.stats.note.empty() ? "" : "; ") + ts.ToString();
    }
  }
  return res;
}

}  // namespace ckv
