// Re-Prefill: serve a request whose context starts with a stored prefix. The longest stored
// prefix is found by content; the suffix is computed through every layer, attending to the
// prefix chunks a KV source policy selects (loaded from SSD ahead of compute) plus the suffix;
// then the first token is emitted and decoding continues with the same prefix selection.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ckv/generate.h"
#include "ckv/model.h"
#include "ckv/prefix_store.h"
#include "ckv/status.h"

namespace ckv {

enum class ScoringSource { kFullKeys, kSummaries };

// How ContiguousKV turns a period's chunk scores into a selection. kTopFraction (the paper):
// the top ceil(budget x m) chunks. kMassCoverage: the fewest top chunks that leave at most
// `budget` of the suffix queries' attention mass (over prefix and suffix keys) outside the
// selection, so each period takes what its own attention needs; budget >= 1 still selects
// everything. Forced chunks are kept by both.
enum class SelectionRule { kTopFraction, kMassCoverage };

struct ReprefillOptions {
  std::string system = "contiguouskv";  // KV source policy (see ReprefillSystems())
  double budget = 0.10;                 // r: fraction of prefix chunks attended
  ScoringSource scoring = ScoringSource::kFullKeys;
  SelectionRule selection = SelectionRule::kTopFraction;
  int sub_period = 4;    // sp: inter-period prefetch starts this many layers in
  bool prefetch = true;  // false: load each period's selection synchronously
  // ContiguousKV with full-key scoring: read each selected unit without the period's first
  // layer's keys, which the scoring read brought already (false: whole units, the paper's
  // reads; the answers are the same, only the bytes read differ).
  bool reuse_scoring_keys = true;
  int max_tokens = 1;  // tokens to generate (the first one is the TTFT token)
  SamplingOptions sampling;
  std::string trace_path;  // Chrome trace-event JSON, if set
  // Also return next-token logits at every suffix position (quality evaluation).
  bool suffix_logits = false;
  // Baseline for quality: chunk scores are random draws (same forced chunks, same budget).
  bool random_selection = false;
  uint64_t random_seed = 0;
  // IMPRESS's best case, for benchmarks only: accept the probe heads' vote in every layer
  // (identification from the probe-key copy alone, never the all-heads fallback), whatever
  // their agreement. Bounds what IMPRESS could cost on a model whose probe heads always agree.
  bool impress_always_vote = false;
  // Called with each generated token as soon as it is sampled (EOS is not passed); returning
  // false stops generation there (a client that went away, a stop string). Runs on the calling
  // thread.
  TokenCallback on_token;
  // Keep the context's KV in the result when it is exact (ReprefillResult::exact_kv), so that
  // storing the context (StoreContext) computes nothing again. What a server sets when it
  // stores each request's context.
  bool keep_exact_kv = false;
};

// The systems' policies (contiguouskv, as-lru, as-h2o-lru, impress, recompute).
std::vector<std::string> ReprefillSystems();
// Every name ApplySystemName accepts: the policies and their aliases (contiguouskv-summaries,
// impress-vote), from the one table of systems (src/pipeline/system_registry.cpp).
std::vector<std::string> ReprefillSystemNames();
// Whether the system reads a stored prefix (false for recompute and unknown names).
bool SystemReadsStoredPrefix(const std::string& system);

struct ReprefillStats {
  // Empty when the request was a plain prefill: the recompute system, no stored prefix
  // matched, or the stored prefix failed (then `note` says why).
  std::string prefix_id;
  std::string system;
  std::string io_backend;
  double io_bandwidth_cap_mbps = 0;  // the emulated device bandwidth (0: the real disk)
  double io_paced_ms = 0;            // read completions held back by that cap (summed)
  int64_t prefix_tokens = 0;         // stored prefix tokens used
  int64_t suffix_tokens = 0;
  double ttft_ms = 0;
  double io_wait_ms = 0;           // compute blocked waiting for prefix data
  double compute_ms = 0;           // layer compute (projections, attention, MLP, head)
  double scoring_ms = 0;           // chunk scoring (part of compute_ms)
  double decode_ms = 0;            // after the first token
  int64_t ssd_bytes_read = 0;      // everything read from the store for this request
  int64_t scoring_bytes_read = 0;  // of which for chunk scoring (keys / summaries)
  int64_t cache_bytes_hit = 0;     // prefix KV attended that the memory cache served
  int64_t scoring_bytes_hit = 0;   // scoring reads (keys, probe copy) the memory cache served
  int64_t attended_bytes = 0;      // prefix KV bytes attended (K+V, all layers, real tokens)
  int64_t attended_ssd_bytes = 0;  // of which in read units that came from SSD (not the cache)
  // KV bytes read from SSD for attention (speculation included) / attended_ssd_bytes.
  double read_amplification = 0;
  // The same without mispredicted speculative reads: what chunk granularity itself costs
  // (1.0 when every byte read for attention is attended; 4 KiB padding of tiny models shows).
  double granularity_amplification = 0;
  int64_t speculative_bytes_wasted = 0;  // bytes of speculatively read units not selected
  int64_t chunks_selected = 0;           // summed over periods
  int64_t chunks_prefetched = 0;         // speculatively (inter-period)
  int64_t chunks_mispredicted = 0;       // speculatively read, then not selected
  // One definition for every system: each read unit of attended data (a unit with at least one
  // attended token, counted once per request) is a hit when the memory cache served it, a miss
  // when it was read from SSD (only when there is a cache). Identification-only reads and
  // speculative reads that were not selected are neither. Units differ in size between
  // systems, so summaries compare by bytes (cache_bytes_hit).
  int64_t cache_hits = 0;
  int64_t cache_misses = 0;
  int64_t buffer_overflows = 0;     // units read synchronously because the prefetch pool was full
  bool buffers_registered = false;  // reads went into io_uring registered (fixed) buffers
  std::string io_note;              // why buffers could not be registered, if they could not
  int64_t speculative_errors = 0;   // speculative requests that failed (not read; counted)
  int64_t prefetch_peak_bytes = 0;  // most prefetch-buffer bytes held at once (engine lifetime)
  int64_t prefetch_capacity_bytes = 0;  // the bound
  double attended_fraction = 0;  // prefix tokens attended / prefix tokens (per layer average)
  int observed_layers = 0;       // layers whose attention mass per prefix key was computed (cache)
  int probe_layers = 0;          // IMPRESS: layers identified through probe heads
  int probe_vote_layers = 0;     // of which the probes agreed (no all-heads fallback)
  bool stopped_by_callback = false;   // on_token returned false
  bool cancelled = false;             // ReprefillSequence::Cancel (a client gone, a timeout)
  bool stopped_at_eos = false;        // the model sampled an end-of-sequence token
  bool stored_prefix_failed = false;  // a matching stored prefix failed to read: recomputed
  std::string note;                   // e.g. why the request fell back to recompute
};

// K/V that a sequence computed with exact attention (every layer of every row attended to
// every earlier row: a full load, a budget of 1.0, or no stored prefix), in position order from
// position 0: what storing its context would otherwise compute again. bf16, one K and one V
// buffer per layer, each tokens.size() x kv_dim.
struct ExactContextKV {
  std::vector<int32_t> tokens;
  std::vector<std::vector<uint16_t>> k, v;
  // How many first rows of a context of `context` tokens these are: the tokens both start with.
  int64_t SharedPrefix(std::span<const int32_t> context) const {
    const size_t n = std::min(tokens.size(), context.size());
    size_t m = 0;
    while (m < n && tokens[m] == context[m]) ++m;
    return static_cast<int64_t>(m);
  }
  int64_t bytes() const {
    int64_t b = 0;
    for (size_t l = 0; l < k.size(); ++l) b += static_cast<int64_t>(k[l].size() + v[l].size()) * 2;
    return b;
  }
};

struct ReprefillResult {
  // With ReprefillOptions::keep_exact_kv, a request that finished (not cancelled) with exact KV
  // keeps it here: the prompt's rows and the generated tokens that went through the model (all
  // but the last). Null otherwise (a budget below 1.0 attends a selection: its KV is not exact).
  std::shared_ptr<const ExactContextKV> exact_kv;
  std::vector<int32_t> generated_ids;
  std::string text;
  std::vector<float> first_logits;   // next-token logits at the last context position
  std::vector<float> suffix_logits;  // [suffix_tokens][vocab] when asked for
  ReprefillStats stats;
  // Selected prefix chunks per period (per layer group), for tests and tracing.
  std::vector<std::vector<int64_t>> selections;
};

class ReprefillEngine;

// One request inside a ReprefillEngine, for callers that interleave many (continuous
// batching): ReprefillEngine::Begin makes one, Prefill runs its Re-Prefill (in pieces of
// layers if asked) up to the first token, DecodeStep advances any number of sequences by one
// token each with one pass over the weights. Threading: none of its own; the thread that
// drives the engine owns its sequences. A sequence must not outlive its engine; destroying
// one mid-prefill waits for the reads it issued.
class ReprefillSequence {
 public:
  enum class Phase { kPrefill, kDecode, kFinished };
  ~ReprefillSequence();
  Phase phase() const;
  bool finished() const { return phase() == Phase::kFinished; }
  // Bytes it holds now: its selected prefix rows and suffix/generated KV for decoding, plus
  // the prefill's activations while it prefills (see ReprefillEngine::SequenceKVBytesBound).
  int64_t memory_bytes() const;
  // Ends the request at the next Prefill or DecodeStep (stats.cancelled); what was generated
  // stays in the result.
  void Cancel();
  // The result; complete (stats included) once finished.
  const ReprefillResult& result() const;
  ReprefillResult TakeResult();

  struct Impl;

 private:
  friend class ReprefillEngine;
  explicit ReprefillSequence(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Serves Re-Prefill requests for one model and one store. Holds the memory cache across
// requests (bounded by cache_bytes; 0 disables it).
class ReprefillEngine {
 public:
  struct Config {
    StoreLayout layout;                      // layout of the prefixes this engine reads
    int64_t cache_bytes = 0;                 // memory cache of prefix KV (0 = off)
    std::string cache_policy = "attention";  // attention | lru | impress
    // The I/O path, set up once (a ring with registered, pinned buffers costs more than a
    // request's reads): bound on prefetch buffers held at once, queue depth, backend.
    int64_t prefetch_bytes = int64_t{64} << 20;
    int io_queue_depth = 64;
    std::string io_backend = "auto";  // auto | uring | threads
    // Emulated device bandwidth in MB/s (10^6 bytes): every read completes no sooner than a
    // device this fast, serving reads in order, would finish it (the real read still happens,
    // so the effective rate is the lower of the two). A simulation of the I/O-bound regime for
    // benchmarks; 0 = off.
    double io_bandwidth_cap_mbps = 0;
  };
  static Result<std::unique_ptr<ReprefillEngine>> Create(const Model& model, PrefixStore& store,
                                                         const Config& config);
  ~ReprefillEngine();

  // `tokens` is the whole context (stored prefix + new suffix). Begin, Prefill and
  // DecodeStep until finished.
  Result<ReprefillResult> Run(std::span<const int32_t> tokens, const ReprefillOptions& opts);

  // Checks the request (tokens, budget, context length, system) and makes its sequence; no
  // compute and no I/O yet. TTFT counts from here.
  Result<std::unique_ptr<ReprefillSequence>> Begin(std::span<const int32_t> tokens,
                                                   const ReprefillOptions& opts);
  // Runs up to `max_layers` more layers of the sequence's prefill (0: all of them). The first
  // call finds the longest stored prefix and issues the policy's first reads, which go on
  // between calls (the I/O of a request being admitted overlaps other sequences' decode).
  // After the last layer the first token is sampled and emitted: the sequence decodes or, at
  // max_tokens 1 / end of sequence / a declined token, finishes. A stored prefix that fails
  // is quarantined and the request recomputed, as in Run. One sequence at a time may be in
  // prefill on an engine (the I/O path and its trace are the engine's): Unavailable
  // for a second one until the first has finished its prefill or is destroyed.
  Status Prefill(ReprefillSequence& seq, int max_layers = 0);
  // One token for every sequence of `seqs` that is decoding (others are skipped; cancelled
  // ones finish): the batch's rows go through each projection and MLP as one matrix, each
  // row attends to its own sequence's prefix selection and tokens.
  Status DecodeStep(std::span<ReprefillSequence* const> seqs);

  // The most KV bytes a sequence of `context_tokens` + `max_tokens` holds for decoding (the
  // selected prefix rows and the suffix cannot exceed the whole context in bf16): what a
  // scheduler admits against.
  static int64_t SequenceKVBytesBound(const ModelConfig& config, int64_t context_tokens,
                                      int max_tokens);

  struct State;  // opaque (src/pipeline/sequence.h)

 private:
  explicit ReprefillEngine(std::unique_ptr<State> s);
  std::unique_ptr<State> s_;
};

// Prefills `tokens` and stores their KV as a prefix (what `ckv cache put` does).
Result<PrefixInfo> StorePrefix(const Model& model, PrefixStore& store, const StoreLayout& layout,
                               std::span<const int32_t> tokens,
                               const std::function<void(double)>& progress = {});
// The same KV stored once per layout, from one prefill (benchmarks compare systems whose
// stores differ in layout).
Result<std::vector<PrefixInfo>> StorePrefix(const Model& model, PrefixStore& store,
                                            std::span<const StoreLayout> layouts,
                                            std::span<const int32_t> tokens,
                                            const std::function<void(double)>& progress = {});

struct StoreContextOptions {
  // Tokens computed per model call (bounds activation memory and how long one piece holds the
  // compute slot).
  int64_t piece_tokens = 512;
  // Layers per piece of model compute (0: all of them): a piece is piece_tokens tokens through
  // this many layers, so a request never waits for more than that many layers of a store.
  int layers_per_piece = 0;
  // Runs one piece of model compute. A server passes a wrapper that waits until no request is
  // computing, so storing never delays a request by more than one piece. Default: run it.
  std::function<Status(const std::function<Status()>& compute)> run_piece;
  // Exact KV a sequence computed (ReprefillResult::exact_kv): its rows for the tokens it shares
  // with the context from position 0 are taken as they are, without reading the stored parent,
  // when they cover more than the parent does. Null: none.
  const ExactContextKV* exact_kv = nullptr;
  // Also store the first this-many tokens (0 < it < the context) as their own entry, from the
  // same KV, before the whole context (which then shares its chunks): a server's two prefixes
  // of a request (docs/SERVING.md) for one parent read and one computation. Nothing is
  // stored when the whole context already is.
  int64_t also_store_first = 0;
};

struct StoredContext {
  PrefixInfo info;
  int64_t reused_tokens = 0;    // KV read back from the longest stored prefix (not computed)
  int64_t given_tokens = 0;     // KV taken from options.exact_kv (not computed)
  int64_t computed_tokens = 0;  // KV computed here
  // The entry of the first also_store_first tokens, when this call stored it.
  std::optional<PrefixInfo> first_info;
};

// Stores `tokens` (e.g. a served request's prompt + generated tokens) as a prefix with exact
// KV: the KV of the longest stored prefix of `tokens` (same layout) is read back from the store
// (or taken from options.exact_kv when that covers more) and only the rest is computed,
// attending to all of it; the store then writes only the chunks the parent does not hold. A
// stored prefix that fails to read is quarantined and the whole context computed.
// InvalidArgument when options.exact_kv does not have the model's shape. Thread-safe with requests
// on the same store and model as long as run_piece keeps model compute apart.
Result<StoredContext> StoreContext(const Model& model, PrefixStore& store,
                                   const StoreLayout& layout, std::span<const int32_t> tokens,
                                   const StoreContextOptions& options = {});

// The layout a system reads by default: ContiguousKV the given ContiguousChunk layout;
// AS+LRU and AS+H2O+LRU 64-token layer-major blocks; IMPRESS its own layout.
StoreLayout DefaultLayoutFor(const std::string& system, const StoreLayout& contiguous);

// The memory-cache eviction each system comes with: ContiguousKV attention-guided (I x F),
// AS+LRU and AS+H2O+LRU LRU, IMPRESS its frequency x important-fraction score.
std::string DefaultCachePolicyFor(const std::string& system);

// Names benchmarks and evaluations accept (ReprefillSystemNames()): sets opts.system to the
// policy, and for an alias the options that define it ("contiguouskv-summaries": scoring from
// the stored key summaries; "impress-vote": impress_always_vote). InvalidArgument listing the
// names for anything else.
Status ApplySystemName(const std::string& name, ReprefillOptions& opts);

}  // namespace ckv
