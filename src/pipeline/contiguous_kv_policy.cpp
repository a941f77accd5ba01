// ContiguousKV: chunk selection once per period of p layers (scored at the period's first
// layer from its full keys or from the stored key summaries), intra-period prefetch of the
// selected chunks for all p layers at once, inter-period speculative prefetch of the current
// selection for the next period at sub-period offset sp, and the attention-guided memory cache.
// With full-key scoring, a selected unit is read without the period's first layer's keys: the
// scoring read brought them already (the unit starts there), so they are not read twice.
#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <utility>

#include "common/clock.h"
#include "kernels/convert.h"
#include "pipeline/prefix_range_reader.h"
#include "policy/chunk_scoring.h"
#include "policy/chunk_selection.h"

namespace ckv {
namespace {

using Clock = SteadyClock;

class ContiguousKVPolicy : public KVSourcePolicy {
 public:
  Status Begin(const RequestContext& ctx) override {
    ctx_ = ctx;
    const ModelConfig& cfg = *ctx.config;
    const StoreLayout& layout = ctx.prefix->layout();
    c_ = layout.chunk_tokens;
    p_ = layout.kind == LayoutKind::kContiguousPeriodMajor ? layout.period_layers : 1;
    if (layout.kind == LayoutKind::kImpress) {
      return Status::InvalidArgument("contiguouskv needs a ContiguousChunk layout, not IMPRESS's");
    }
    periods_ = (cfg.num_layers + p_ - 1) / p_;
    kv_row_bytes_ = static_cast<int64_t>(cfg.kv_dim()) * 2;
    shape_ = AttentionShape{cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, DType::kBF16};
    acct_ = {};
    reader_.Reset(ctx, &acct_);
    finished_.clear();
    scoring_keys_.clear();
    scoring_copies_.clear();
    scoring_units_.clear();
    scoring_plans_.clear();
    scoring_ahead_bytes_.clear();
    ahead_bytes_total_ = 0;
    selections_.assign(periods_, {});
    units_.assign(periods_, {});
    scored_keys_.assign(periods_, {});
    importance_.assign(periods_, {});
    if (ctx.opts->budget < 1.0 && !ctx.opts->random_selection) IssueScoringReads();
    return Status::OK();
  }

  Result<PrefixContext> PrefixKV(int layer, const float* q, int n_q, const int32_t* q_pos,
                                 const KVSpan& suffix_keys) override {
    const int period = layer / p_;
    const int first = period * p_;
    if (layer == first) {
      if (period > 0) FinishPeriod(period - 1);
      CKV_RETURN_IF_ERROR(SelectPeriod(period, layer, q, n_q, q_pos, suffix_keys));
      CKV_RETURN_IF_ERROR(RequestPeriod(period));
      // The next period's keys, after this period's units: a device serves reads in order, and
      // these units are needed first.
      if (!scoring_plans_.empty()) IssueScoringAhead();
      if (!ctx_.opts->prefetch) CKV_RETURN_IF_ERROR(WaitAll(period));
    }
    if (ctx_.opts->prefetch && layer == first + ctx_.opts->sub_period && period + 1 < periods_) {
      Speculate(period + 1);
    }
    PrefixContext out;
    const auto& sel = selections_[period];
    out.spans.reserve(sel.size());
    for (int64_t j : sel) {
      auto it = units_[period].find(j);
      if (it == units_[period].end())
        return Status::Internal("unit of selected chunk not requested");
      const Unit& unit = it->second;
      const FetchedRange& u = *unit.range;
      CKV_RETURN_IF_ERROR(reader_.Wait(u));
      CKV_ASSIGN_OR_RETURN(Extent ext, ctx_.prefix->LocateExtent(layer, j));
      const int64_t k_bytes = static_cast<int64_t>(c_) * kv_row_bytes_;
      const std::byte* k = nullptr;
      const std::byte* v = nullptr;
      if (ext.offset < u.offset) {
        // A unit read without this layer's keys (TrimmedUnit): they are the scoring read's,
        // which was not verified; the extent is checked whole before it is attended.
        if (!unit.keys) return Status::Internal("keys of a trimmed unit not held");
        k = unit.keys->data();
        v = u.At(ext.offset + k_bytes);
        CKV_RETURN_IF_ERROR(ctx_.prefix->VerifyExtent(layer, j, k, v));
        out.keep_alive.push_back(unit.keys->range);
      } else {
        k = u.At(ext.offset);
        v = k + k_bytes;
      }
      const int64_t tokens = ChunkTokensUsed(j);
      out.spans.push_back({k, v, tokens, j * c_});
      out.chunks.push_back(j);
      out.keep_alive.push_back(unit.range);
      acct_.attended_bytes += tokens * kv_row_bytes_ * 2;
      if (u.from_ssd()) acct_.attended_ssd_bytes += tokens * kv_row_bytes_ * 2;
    }
    return out;
  }

  void Observe(int layer, const PrefixContext& ctx, std::span<const float> mass) override {
    AccumulateChunkMass(ctx, mass, importance_[layer / p_]);
  }

  std::vector<std::vector<int64_t>> Selections() const override { return selections_; }

  PolicyAccounting End() override {
    if (periods_ > 0) FinishPeriod(periods_ - 1);
    // Reads still in flight (speculation for a period that never came) belong to this
    // request: finish them before it ends.
    reader_.Drain();
    return std::exchange(acct_, {});
  }

 private:
  int64_t ChunkTokensUsed(int64_t j) const {
    return std::min<int64_t>(c_, ctx_.prefix_tokens - j * c_);
  }

  // A unit by file and offset (a unit is shared by the layers of a period).
  ChunkKey UnitKey(int period, const ReadUnit& u) const {
    return reader_.Key(u.file, RangeCut::kUnit, period, u.offset);
  }

  // Full-key scoring needs the keys of every chunk at each period's first layer; they do not
  // depend on any selection, so they are read ahead, in period order, while layers compute.
  // They go through the memory cache too (group -1 - period), with no attention importance.
  // Planned here; issued by IssueScoringAhead as far as the prefetch pool allows.
  void IssueScoringReads() {
    scoring_plans_.assign(periods_, {});
    scoring_units_.assign(periods_, {});
    scoring_ahead_bytes_.assign(periods_, 0);
    next_scoring_ = {0, 0};
    selected_through_ = -1;
    for (int period = 0; period < periods_; ++period) {
      const int layer = period * p_;
      auto& plans = scoring_plans_[period];
      if (ctx_.opts->scoring == ScoringSource::kSummaries) {
        for (const LayerBlock& b : ctx_.prefix->SummaryBlocks(layer)) {
          auto prefix = ctx_.prefix;
          plans.push_back({true, b.unit, b.unit.offset, "summaries L" + std::to_string(layer),
                           [prefix, b, layer](const std::byte* bytes) {
                             return prefix->VerifyBlock(b, layer, bytes);
                           }});
        }
      } else {
        for (int64_t j = 0; j < ctx_.n_chunks; ++j) {
          auto ext = ctx_.prefix->LocateExtent(layer, j);
          if (!ext.ok()) {
            plans.push_back({});  // reported when scoring needs it
            continue;
          }
          // The K half of the extent, widened to 4 KiB alignment for O_DIRECT. Scoring reads
          // are advisory (a selected chunk's keys are verified with its values before use), so
          // they are not verified.
          const uint64_t k_bytes = static_cast<uint64_t>(c_) * kv_row_bytes_;
          const uint64_t begin = AlignDown4k(ext->offset);
          const uint64_t end = AlignUp4k(ext->offset + k_bytes);
          plans.push_back({true, ReadUnit{ext->file, begin, static_cast<uint32_t>(end - begin)},
                           ext->offset, "keys L" + std::to_string(layer) + " c" + std::to_string(j),
                           nullptr});
        }
      }
      scoring_units_[period].resize(plans.size());
    }
    IssueScoringAhead();
  }

  // Scoring keys are read at most this many periods beyond the one computing: more would queue
  // on the device ahead of that period's units, which are needed first.
  static constexpr int kScoringPeriodsAhead = 1;

  // Issues planned scoring reads in period order, up to kScoringPeriodsAhead periods past the
  // last selection, while the ones read ahead of their period's selection hold at most half the
  // prefetch pool and the pool has room: a long prefix at a short period has more keys than the
  // pool holds (32K tokens x 12 periods of the 0.5B shape: 100 MB), and reads issued past that
  // would be synchronous, or leave the current period's units no buffers.
  void IssueScoringAhead() {
    const size_t window = ctx_.loader->pool().capacity() / 2;
    auto& [period, index] = next_scoring_;
    while (period < periods_ && period <= selected_through_ + kScoringPeriodsAhead) {
      if (index >= scoring_plans_[period].size()) {
        ++period;
        index = 0;
        continue;
      }
      const ScoringPlan& plan = scoring_plans_[period][index];
      if (plan.located) {
        if (ahead_bytes_total_ + plan.unit.length > window) return;
        if (!IssueScoring(period, index, /*ahead=*/true)) return;  // the pool is full
      }
      ++index;
    }
  }

  // Issues scoring read `index` of `period`; ahead: not when the pool is full (false).
  bool IssueScoring(int period, size_t index, bool ahead) {
    const ScoringPlan& plan = scoring_plans_[period][index];
    const ReadUnit& unit = plan.unit;
    const ChunkKey key = reader_.Key(unit.file, RangeCut::kUnit, -1 - period, unit.offset);
    auto r =
        ahead
            ? reader_.FetchAhead(unit.file, unit.offset, unit.length, key, plan.verify, plan.label)
            : reader_.Fetch(unit.file, unit.offset, unit.length, key, plan.verify, plan.label);
    if (!r) return false;
    reader_.Account(*r, /*scoring=*/true);
    if (r->from_ssd()) {
      scoring_ahead_bytes_[period] += unit.length;
      ahead_bytes_total_ += unit.length;
    } else {
      scoring_keys_[period].push_back(key);  // a cache hit, holding no pool buffer
    }
    scoring_units_[period][index] = ScoringRange{std::move(r), plan.data_at};
    return true;
  }

  // Before a period scores: every one of its scoring reads issued (those the window held back
  // now, waiting for a buffer only if the pool is still full).
  void IssueScoringOf(int period) {
    IssueScoringAhead();
    auto& [next_period, index] = next_scoring_;
    for (; next_period <= period; ++next_period, index = 0) {
      for (; index < scoring_plans_[next_period].size(); ++index) {
        if (scoring_plans_[next_period][index].located) {
          IssueScoring(next_period, index, /*ahead=*/false);
        }
      }
    }
  }

  // What a scoring read is, issued or not.
  struct ScoringPlan {
    bool located = false;  // false: the store could not locate it (an error when scored)
    ReadUnit unit;
    uint64_t data_at = 0;
    std::string label;
    std::function<Status(const std::byte*)> verify;
  };

  // One issued scoring range and the file offset of the data scoring uses inside it.
  struct ScoringRange {
    std::shared_ptr<FetchedRange> range;
    uint64_t data_at = 0;
    const std::byte* data() const { return range->At(data_at); }
  };

  Status SelectPeriod(int period, int layer, const float* q, int n_q, const int32_t* q_pos,
                      const KVSpan& suffix_keys) {
    const auto t0 = Clock::now();
    const double b = ctx_.tracer->NowUs();
    std::vector<float> scores(ctx_.n_chunks, 0.f);
    if (ctx_.opts->budget >= 1.0) {
      // Everything is selected; no scoring needed.
    } else if (ctx_.opts->random_selection) {
      std::mt19937_64 rng(ctx_.opts->random_seed * 1000003 + period);
      std::uniform_real_distribution<float> u(0.f, 1.f);
      for (auto& s : scores) s = u(rng);
    } else {
      IssueScoringOf(period);
      for (const ScoringRange& u : scoring_units_[period]) {
        if (!u.range) return Status::Internal("a scoring read could not be located in the store");
        CKV_RETURN_IF_ERROR(reader_.Wait(*u.range));
      }
      const double sb = ctx_.tracer->NowUs();
      if (ctx_.opts->scoring == ScoringSource::kSummaries) {
        CKV_ASSIGN_OR_RETURN(scores, ScoreFromSummaries(period, q, n_q));
      } else {
        std::vector<KVSpan> keys;
        for (int64_t j = 0; j < ctx_.n_chunks; ++j) {
          keys.push_back({scoring_units_[period][j].data(), nullptr, ChunkTokensUsed(j), j * c_});
        }
        scores = ScoreChunksByAttention(q, n_q, q_pos, keys, suffix_keys, shape_);
      }
      if (ctx_.tracer->enabled())
        ctx_.tracer->Complete(Tracer::kCompute, "score chunks", sb, ctx_.tracer->NowUs());
      // Copies go into the cache when the period is finished, with their importance: inserted
      // now, with none, a full cache would evict each one as the next came in.
      if (ctx_.cache != nullptr) {
        for (const ScoringRange& u : scoring_units_[period]) {
          if (u.range->from_ssd())
            scoring_copies_[period].emplace_back(u.range->key, u.range->Copy());
        }
      }
    }
    const int64_t last_tokens = ChunkTokensUsed(ctx_.n_chunks - 1);
    SelectionBudget budget;
    budget.ratio = ctx_.opts->budget;
    double total_mass = 0;
    if (ctx_.opts->selection == SelectionRule::kMassCoverage && !ctx_.opts->random_selection &&
        ctx_.opts->budget < 1.0) {
      // Every (query, head) row's probabilities sum to 1 over all keys (over all chunks, for
      // summaries), so this is what the scores would sum to with nothing pruned.
      budget.max_uncovered_mass = ctx_.opts->budget;
      total_mass = static_cast<double>(n_q) * ctx_.config->num_heads;
    }
    selections_[period] = SelectChunks(scores, last_tokens, c_, budget, total_mass);
    if (!scoring_units_.empty() && !scoring_units_[period].empty()) {
      // The selected chunks' first-layer keys are attended from the scoring read; the rest of
      // the buffers go back to the pool.
      if (ctx_.opts->scoring == ScoringSource::kFullKeys) {
        for (int64_t j : selections_[period]) scored_keys_[period][j] = scoring_units_[period][j];
      }
      scoring_units_[period].clear();
      scoring_plans_[period].clear();
      ahead_bytes_total_ -= scoring_ahead_bytes_[period];
      scoring_ahead_bytes_[period] = 0;
    }
    selected_through_ = period;
    acct_.chunks_selected += static_cast<int64_t>(selections_[period].size());
    acct_.scoring_ms += MsSince(t0);
    if (ctx_.tracer->enabled()) {
      ctx_.tracer->Complete(Tracer::kCompute, "select period " + std::to_string(period), b,
                            ctx_.tracer->NowUs(),
                            "{\"layer\":" + std::to_string(layer) +
                                ",\"chunks\":" + std::to_string(selections_[period].size()) + "}");
    }
    return Status::OK();
  }

  Result<std::vector<float>> ScoreFromSummaries(int period, const float* q, int n_q) {
    // Block bytes: [chunk][min, max, mean][kv_dim] bf16, one block per segment in chunk order.
    const int kv_dim = ctx_.config->kv_dim();
    std::vector<float> mins(static_cast<size_t>(ctx_.n_chunks) * kv_dim);
    std::vector<float> maxs(mins.size());
    std::vector<int32_t> tokens(ctx_.n_chunks);
    const auto blocks = ctx_.prefix->SummaryBlocks(period * p_);
    for (size_t bi = 0; bi < blocks.size(); ++bi) {
      const LayerBlock& b = blocks[bi];
      const auto* bf = reinterpret_cast<const uint16_t*>(scoring_units_[period][bi].data());
      for (int64_t i = 0; i < b.n_chunks; ++i) {
        const int64_t j = b.first_chunk + i;
        if (j >= ctx_.n_chunks) break;
        Bf16ToF32Row(bf + (i * 3 + 0) * kv_dim, mins.data() + j * kv_dim, kv_dim);
        Bf16ToF32Row(bf + (i * 3 + 1) * kv_dim, maxs.data() + j * kv_dim, kv_dim);
        tokens[j] = static_cast<int32_t>(ChunkTokensUsed(j));
      }
    }
    KeySummaries sm{mins.data(), maxs.data(), ctx_.n_chunks, tokens};
    return ScoreChunksBySummaries(q, n_q, sm, shape_);
  }

  // Loads (or finds) every unit period `period` needs for its selection.
  Status RequestPeriod(int period) {
    const int first = period * p_;
    const int last = std::min(first + p_, ctx_.config->num_layers);
    std::set<int64_t> selected(selections_[period].begin(), selections_[period].end());
    // Speculative units of chunks that were not selected were wasted reads.
    for (auto it = units_[period].begin(); it != units_[period].end();) {
      if (it->second.speculative && !selected.count(it->first)) {
        ++acct_.chunks_mispredicted;
        reader_.AccountWasted(*it->second.range);
        it = units_[period].erase(it);
      } else {
        ++it;
      }
    }
    for (int64_t j : selections_[period]) {
      for (int l = first; l < last; ++l) CKV_RETURN_IF_ERROR(Request(period, l, j, false));
    }
    // Every unit left is attended: count each once, as every system does (ReprefillStats),
    // speculative ones included, mispredicted ones (erased above) as wasted reads.
    for (const auto& [chunk, u] : units_[period]) reader_.Account(*u.range, /*scoring=*/false);
    // Scoring reads whose keys are attended were data loaded to be attended, not only to score.
    for (const auto& [chunk, keys] : scored_keys_[period]) {
      if (units_[period].count(chunk) && units_[period].at(chunk).keys) {
        reader_.AccountAttendedAfterAll(*keys.range);
      }
    }
    return Status::OK();
  }

  void Speculate(int next_period) {
    const int first = next_period * p_;
    const int last = std::min(first + p_, ctx_.config->num_layers);
    for (int64_t j : selections_[next_period - 1]) {
      for (int l = first; l < last; ++l) {
        // A speculative read that cannot be located is skipped and counted; if the chunk is
        // selected, its real request fails with the reason.
        if (!Request(next_period, l, j, true).ok()) ++acct_.speculative_errors;
      }
    }
  }

  Status Request(int period, int layer, int64_t chunk, bool speculative) {
    // One unit per chunk and period: a period-major unit holds all its layers, a layer-major
    // period is one layer.
    auto& map = units_[period];
    if (map.count(chunk)) return Status::OK();
    CKV_ASSIGN_OR_RETURN(ReadUnit unit, ctx_.prefix->LocateUnit(layer, chunk));
    const ScoringRange* keys = TrimmedUnit(period, chunk, unit);
    const ChunkKey key = UnitKey(period, unit);
    auto prefix = ctx_.prefix;
    const int first = period * p_;
    const int last = std::min(first + p_, ctx_.config->num_layers);
    // Verify every extent of the unit this request will use (all layers of the period).
    auto verify = [prefix, unit, chunk, first, last](const std::byte* bytes) -> Status {
      for (int l = first; l < last; ++l) {
        auto ext = prefix->LocateExtent(l, chunk);
        if (!ext.ok()) return ext.status();
        // Only the extents inside this unit (layer-major units hold a single layer; a trimmed
        // unit's first extent is checked at use, with its keys from the scoring read).
        if (ext->file != unit.file || ext->offset < unit.offset ||
            ext->offset + ext->length > unit.offset + unit.length) {
          continue;
        }
        CKV_RETURN_IF_ERROR(
            prefix->VerifyExtent(l, chunk, KVPart::kKV, bytes + (ext->offset - unit.offset)));
      }
      return Status::OK();
    };
    std::string label = "P" + std::to_string(period) + " c" + std::to_string(chunk);
    // Speculation never blocks compute: skipped when the prefetch buffers are full.
    auto r =
        speculative
            ? reader_.FetchAhead(unit.file, unit.offset, unit.length, key, verify, std::move(label))
            : reader_.Fetch(unit.file, unit.offset, unit.length, key, verify, std::move(label));
    if (!r) return Status::OK();
    if (speculative && r->from_ssd()) ++acct_.chunks_prefetched;
    map.emplace(chunk, Unit{std::move(r), key, speculative,
                            keys ? std::make_optional(*keys) : std::nullopt});
    return Status::OK();
  }

  // With full-key scoring, the period's scoring read holds chunk j's first-layer keys (issued
  // in Begin for every period; kept past selection for the selected chunks). When the unit
  // starts with that layer's extent and its keys end on a 4 KiB boundary, `unit` is cut to
  // start after them and the held keys are returned; otherwise nullptr and `unit` is whole.
  const ScoringRange* TrimmedUnit(int period, int64_t chunk, ReadUnit& unit) const {
    if (!ctx_.opts->reuse_scoring_keys || ctx_.opts->scoring != ScoringSource::kFullKeys ||
        ctx_.opts->budget >= 1.0 || ctx_.opts->random_selection) {
      return nullptr;
    }
    const ScoringRange* keys = nullptr;
    if (auto it = scored_keys_[period].find(chunk); it != scored_keys_[period].end()) {
      keys = &it->second;
    } else if (!scoring_units_.empty() && !scoring_units_[period].empty() &&
               scoring_units_[period][chunk].range) {
      keys = &scoring_units_[period][chunk];  // not yet scored: a speculative read
    }
    if (keys == nullptr) return nullptr;
    const uint64_t k_bytes = static_cast<uint64_t>(c_) * kv_row_bytes_;
    const uint64_t cut = keys->data_at + k_bytes;
    if (keys->data_at != unit.offset || cut % 4096 != 0 || cut >= unit.offset + unit.length) {
      return nullptr;
    }
    unit.length -= static_cast<uint32_t>(cut - unit.offset);
    unit.offset = cut;
    return keys;
  }

  Status WaitAll(int period) {
    for (auto& [chunk, u] : units_[period]) CKV_RETURN_IF_ERROR(reader_.Wait(*u.range));
    return Status::OK();
  }

  // The period is done: feed the cache (attention importance of each chunk) and release.
  void FinishPeriod(int period) {
    if (finished_.count(period)) return;
    finished_.insert(period);
    if (ctx_.cache != nullptr) {
      // Scoring keys are read by every request on this prefix, whatever it selects: they get
      // the importance of the period's most attended chunk (before this period's data goes
      // in), or the attention-guided policy (S = I x F) would evict them first and pay a read
      // for each on the next request.
      double top = 0;
      for (const auto& [chunk, imp] : importance_[period]) top = std::max(top, imp);
      for (auto& [key, data] : scoring_copies_[period]) {
        reader_.Insert(key, std::move(data));
        reader_.Feedback(key, top, 1.0);
      }
      for (const ChunkKey& key : scoring_keys_[period]) reader_.Feedback(key, top, 1.0);
      for (auto& [chunk, u] : units_[period]) {
        reader_.Insert(*u.range);
        const auto imp = importance_[period].find(chunk);
        reader_.Feedback(u.key, imp == importance_[period].end() ? 0.0 : imp->second, 1.0);
      }
    }
    scoring_keys_.erase(period);
    scoring_copies_.erase(period);
    units_[period].clear();
    scored_keys_[period].clear();
  }

  // A read unit a period attends (or was speculatively read for it); `keys`, when the unit was
  // read without its first layer's keys, is the scoring read that holds them.
  struct Unit {
    std::shared_ptr<FetchedRange> range;
    ChunkKey key;
    bool speculative = false;
    std::optional<ScoringRange> keys;
  };

  RequestContext ctx_;
  PolicyAccounting acct_;
  PrefixRangeReader reader_;
  int c_ = 16, p_ = 8, periods_ = 0;
  int64_t kv_row_bytes_ = 0;
  AttentionShape shape_;
  std::vector<std::vector<int64_t>> selections_;
  std::vector<std::map<int64_t, Unit>> units_;  // per period, by chunk
  // Per period: the scoring reads of its selected chunks (their first-layer keys).
  std::vector<std::map<int64_t, ScoringRange>> scored_keys_;
  std::vector<std::map<int64_t, double>> importance_;
  // Per period: its scoring reads (planned in Begin, issued in order as the pool allows), the
  // bytes of them issued, and the next one to issue (period, index).
  std::vector<std::vector<ScoringPlan>> scoring_plans_;
  std::vector<std::vector<ScoringRange>> scoring_units_;
  std::vector<uint64_t> scoring_ahead_bytes_;
  uint64_t ahead_bytes_total_ = 0;
  std::pair<int, size_t> next_scoring_{0, 0};
  int selected_through_ = -1;  // the last period whose selection is made
  // Per period until it is finished: scoring units the cache served, and copies of the ones
  // read from SSD, to insert with their importance.
  std::map<int, std::vector<ChunkKey>> scoring_keys_;
  std::map<int, std::vector<std::pair<ChunkKey, ChunkCache::Data>>> scoring_copies_;
  std::set<int> finished_;
};

}  // namespace

std::unique_ptr<KVSourcePolicy> MakeContiguousKVPolicy() {
  return std::make_unique<ContiguousKVPolicy>();
}

}  // namespace ckv
