// ContiguousKV: chunk selection once per period of p layers (scored at the period's first
// layer from its full keys or from the stored key summaries), intra-period prefetch of the
// selected chunks for all p layers at once, inter-period speculative prefetch of the current
// selection for the next period at sub-period offset sp, and the attention-guided memory cache.
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <random>
#include <set>

#include "common/clock.h"
#include "kernels/convert.h"
#include "pipeline/kv_source_policy.h"
#include "policy/chunk_scoring.h"
#include "policy/chunk_selection.h"

namespace ckv {
namespace {

using Clock = SteadyClock;

// A read unit's bytes, from the SSD (a loader slot) or the memory cache.
struct UnitData {
  std::shared_ptr<UnitSlot> slot;  // set when read from SSD
  ChunkCache::Data cached;         // set on a cache hit
  ReadUnit unit;
  ChunkKey key;
  uint64_t data_offset = 0;  // where the wanted bytes start inside the unit
  bool speculative = false;
  const std::byte* bytes() const {
    return cached ? reinterpret_cast<const std::byte*>(cached->data()) : slot->data();
  }
};

// The cache keeps its own copy: the loader's buffer goes back to the bounded prefetch pool.
ChunkCache::Data CopyOf(const UnitData& u) {
  const auto* b = reinterpret_cast<const unsigned char*>(u.slot->data());
  return std::make_shared<const std::vector<unsigned char>>(b, b + u.unit.length);
}

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
    finished_.clear();
    scoring_keys_.clear();
    scoring_copies_.clear();
    selections_.assign(periods_, {});
    units_.assign(periods_, {});
    importance_.assign(periods_, {});
    path_hash_.clear();
    for (const StoreFile& f : ctx.prefix->files())
      path_hash_.push_back(XXH3_64bits(f.path.data(), f.path.size()));
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
      if (!ctx_.opts->prefetch) CKV_RETURN_IF_ERROR(WaitAll(period));
    }
    if (ctx_.opts->prefetch && layer == first + ctx_.opts->sub_period && period + 1 < periods_) {
      Speculate(period + 1);
    }
    PrefixContext out;
    const auto& sel = selections_[period];
    out.spans.reserve(sel.size());
    for (int64_t j : sel) {
      auto it = units_[period].find(UnitKeyFor(layer, j));
      if (it == units_[period].end())
        return Status::Internal("unit of selected chunk not requested");
      UnitData& u = *it->second;
      if (u.slot && !u.slot->ready()) {
        const auto t0 = Clock::now();
        const double b = ctx_.tracer->NowUs();
        Status st = ctx_.loader->Wait(*u.slot);
        ctx_.stats->io_wait_ms += MsSince(t0);
        if (ctx_.tracer->enabled())
          ctx_.tracer->Complete(Tracer::kCompute, "wait I/O", b, ctx_.tracer->NowUs());
        CKV_RETURN_IF_ERROR(st);
      } else if (u.slot) {
        CKV_RETURN_IF_ERROR(u.slot->status());
      }
      CKV_ASSIGN_OR_RETURN(Extent ext, ctx_.prefix->LocateExtent(layer, j));
      const std::byte* base = u.bytes() + (ext.offset - u.unit.offset);
      const int64_t tokens = ChunkTokensUsed(j);
      out.spans.push_back({base, base + static_cast<int64_t>(c_) * kv_row_bytes_, tokens, j * c_});
      out.chunks.push_back(j);
      out.keep_alive.push_back(it->second);
      ctx_.stats->attended_bytes += tokens * kv_row_bytes_ * 2;
      if (u.slot) ctx_.stats->attended_ssd_bytes += tokens * kv_row_bytes_ * 2;
    }
    return out;
  }

  void Observe(int layer, const PrefixContext& ctx, std::span<const float> mass) override {
    AccumulateChunkMass(ctx, mass, importance_[layer / p_]);
  }

  std::vector<std::vector<int64_t>> Selections() const override { return selections_; }

  void End() override {
    if (periods_ > 0) FinishPeriod(periods_ - 1);
    // Reads still in flight (speculation for a period that never came) belong to this
    // request: finish them before it ends.
    for (auto& weak : issued_) {
      if (auto slot = weak.lock(); slot && !slot->ready()) (void)ctx_.loader->Wait(*slot);
    }
    issued_.clear();
  }

 private:
  int64_t ChunkTokensUsed(int64_t j) const {
    return std::min<int64_t>(c_, ctx_.prefix_tokens - j * c_);
  }

  // Identifies a unit by file and offset (a unit is shared by the layers of a period).
  Result<std::pair<ChunkKey, ReadUnit>> UnitOf(int layer, int64_t chunk) const {
    CKV_ASSIGN_OR_RETURN(ReadUnit u, ctx_.prefix->LocateUnit(layer, chunk));
    return std::make_pair(ChunkKey{path_hash_[u.file], layer / p_, static_cast<int64_t>(u.offset)},
                          u);
  }
  ChunkKey UnitKeyFor(int layer, int64_t chunk) const {
    auto r = UnitOf(layer, chunk);
    return r.ok() ? r->first : ChunkKey{};
  }

  // Full-key scoring needs the keys of every chunk at each period's first layer; they do not
  // depend on any selection, so all are requested up front and arrive while layers compute.
  // They go through the memory cache too (group -1 - period), with no attention importance.
  void IssueScoringReads() {
    scoring_units_.assign(periods_, {});
    for (int period = 0; period < periods_; ++period) {
      const int layer = period * p_;
      if (ctx_.opts->scoring == ScoringSource::kSummaries) {
        for (const LayerBlock& b : ctx_.prefix->SummaryBlocks(layer)) {
          auto prefix = ctx_.prefix;
          scoring_units_[period].push_back(ScoringRead(
              period, b.unit,
              [prefix, b, layer](const std::byte* bytes) {
                return prefix->VerifyBlock(b, layer, bytes);
              },
              0, "summaries L" + std::to_string(layer)));
        }
        continue;
      }
      for (int64_t j = 0; j < ctx_.n_chunks; ++j) {
        auto ext = ctx_.prefix->LocateExtent(layer, j);
        if (!ext.ok()) {
          scoring_units_[period].push_back(nullptr);  // reported when scoring needs it
          continue;
        }
        // The K half of the extent, widened to 4 KiB alignment for O_DIRECT. Scoring reads are
        // advisory (a selected chunk is re-read whole and verified), so they are not verified.
        const uint64_t k_bytes = static_cast<uint64_t>(c_) * kv_row_bytes_;
        const uint64_t begin = ext->offset & ~uint64_t{4095};
        const uint64_t end = (ext->offset + k_bytes + 4095) & ~uint64_t{4095};
        const ReadUnit unit{ext->file, begin, static_cast<uint32_t>(end - begin)};
        scoring_units_[period].push_back(
            ScoringRead(period, unit, nullptr, ext->offset - begin,
                        "keys L" + std::to_string(layer) + " c" + std::to_string(j)));
      }
    }
  }

  std::shared_ptr<UnitData> ScoringRead(int period, const ReadUnit& unit,
                                        std::function<Status(const std::byte*)> verify,
                                        uint64_t data_offset, std::string label) {
    auto data = std::make_shared<UnitData>();
    data->unit = unit;
    data->key = ChunkKey{path_hash_[unit.file], -1 - period, static_cast<int64_t>(unit.offset)};
    data->data_offset = data_offset;
    if (ctx_.cache != nullptr) {
      if (auto hit = ctx_.cache->Lookup(data->key)) {
        data->cached = std::move(hit);
        ctx_.stats->scoring_bytes_hit += static_cast<int64_t>(data->cached->size());
        scoring_keys_[period].push_back(data->key);
        return data;
      }
    }
    const StoreFile& f = ctx_.prefix->files()[unit.file];
    data->slot = ctx_.loader->Load(f.direct_fd >= 0 ? f.direct_fd : f.fd, unit.offset, unit.length,
                                   std::move(verify), std::move(label));
    issued_.push_back(data->slot);
    ctx_.stats->scoring_bytes_read += unit.length;
    return data;
  }

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
      const auto w0 = Clock::now();
      const double wb = ctx_.tracer->NowUs();
      for (auto& u : scoring_units_[period]) {
        if (!u) return Status::Internal("a scoring read could not be located in the store");
        if (u->slot) CKV_RETURN_IF_ERROR(ctx_.loader->Wait(*u->slot));
      }
      ctx_.stats->io_wait_ms += MsSince(w0);
      if (ctx_.tracer->enabled()) {
        ctx_.tracer->Complete(Tracer::kCompute, "wait scoring reads", wb, ctx_.tracer->NowUs());
      }
      const double sb = ctx_.tracer->NowUs();
      if (ctx_.opts->scoring == ScoringSource::kSummaries) {
        CKV_ASSIGN_OR_RETURN(scores, ScoreFromSummaries(period, q, n_q));
      } else {
        std::vector<KVSpan> keys;
        for (int64_t j = 0; j < ctx_.n_chunks; ++j) {
          const UnitData& u = *scoring_units_[period][j];
          const std::byte* k = u.bytes() + u.data_offset;
          keys.push_back({k, nullptr, ChunkTokensUsed(j), j * c_});
        }
        scores = ScoreChunksByAttention(q, n_q, q_pos, keys, suffix_keys, shape_);
      }
      if (ctx_.tracer->enabled())
        ctx_.tracer->Complete(Tracer::kCompute, "score chunks", sb, ctx_.tracer->NowUs());
      // Copies go into the cache when the period is finished, with their importance: inserted
      // now, with none, a full cache would evict each one as the next came in.
      if (ctx_.cache != nullptr) {
        for (auto& u : scoring_units_[period]) {
          if (u->slot) scoring_copies_[period].emplace_back(u->key, CopyOf(*u));
        }
      }
      scoring_units_[period].clear();  // release the buffers
    }
    const int64_t last_tokens = ChunkTokensUsed(ctx_.n_chunks - 1);
    SelectionBudget budget;
    budget.ratio = ctx_.opts->budget;
    selections_[period] = SelectChunks(scores, last_tokens, c_, budget);
    ctx_.stats->chunks_selected += static_cast<int64_t>(selections_[period].size());
    ctx_.stats->scoring_ms += MsSince(t0);
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
      const auto* bf = reinterpret_cast<const uint16_t*>(scoring_units_[period][bi]->bytes());
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
      if (it->second->speculative && !selected.count(chunk_of_.at(it->first))) {
        ++ctx_.stats->chunks_mispredicted;
        if (it->second->slot) ctx_.stats->speculative_bytes_wasted += it->second->unit.length;
        it = units_[period].erase(it);
      } else {
        ++it;
      }
    }
    for (int64_t j : selections_[period]) {
      for (int l = first; l < last; ++l) CKV_RETURN_IF_ERROR(Request(period, l, j, false));
    }
    // Every unit left is attended: count each once, as every system does (ReprefillStats),
    // speculative ones included, mispredicted ones (erased above) not.
    if (ctx_.cache != nullptr) {
      for (const auto& [key, u] : units_[period]) {
        if (u->cached) {
          ++ctx_.stats->cache_hits;
          ctx_.stats->cache_bytes_hit += static_cast<int64_t>(u->cached->size());
        } else {
          ++ctx_.stats->cache_misses;
        }
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
        if (!Request(next_period, l, j, true).ok()) ++ctx_.stats->speculative_errors;
      }
    }
  }

  Status Request(int period, int layer, int64_t chunk, bool speculative) {
    CKV_ASSIGN_OR_RETURN(auto ku, UnitOf(layer, chunk));
    auto& map = units_[period];
    if (map.count(ku.first)) return Status::OK();
    auto data = std::make_shared<UnitData>();
    data->unit = ku.second;
    data->key = ku.first;
    data->speculative = speculative;
    chunk_of_[ku.first] = chunk;
    if (ctx_.cache != nullptr) {
      if (auto hit = ctx_.cache->Lookup(ku.first)) {
        data->cached = std::move(hit);
        map.emplace(ku.first, std::move(data));
        return Status::OK();
      }
    }
    const StoreFile& f = ctx_.prefix->files()[ku.second.file];
    auto prefix = ctx_.prefix;
    const int first = period * p_;
    const int last = std::min(first + p_, ctx_.config->num_layers);
    const ReadUnit unit = ku.second;
    // Verify every extent of the unit this request will use (all layers of the period).
    auto verify = [prefix, unit, chunk, first, last](const std::byte* bytes) -> Status {
      for (int l = first; l < last; ++l) {
        auto ext = prefix->LocateExtent(l, chunk);
        if (!ext.ok()) return ext.status();
        // Only the extents inside this unit (layer-major units hold a single layer).
        if (ext->file != unit.file || ext->offset < unit.offset ||
            ext->offset + ext->length > unit.offset + unit.length) {
          continue;
        }
        CKV_RETURN_IF_ERROR(
            prefix->VerifyExtent(l, chunk, KVPart::kKV, bytes + (ext->offset - unit.offset)));
      }
      return Status::OK();
    };
    const int fd = f.direct_fd >= 0 ? f.direct_fd : f.fd;
    std::string label = "P" + std::to_string(period) + " c" + std::to_string(chunk);
    if (speculative) {
      // Speculation never blocks compute: skip it when the prefetch buffers are full.
      data->slot = ctx_.loader->TryLoad(fd, unit.offset, unit.length, verify, std::move(label));
      if (!data->slot) return Status::OK();
    } else {
      data->slot = ctx_.loader->Load(fd, unit.offset, unit.length, verify, std::move(label));
    }
    issued_.push_back(data->slot);
    ctx_.stats->ssd_bytes_read += unit.length;
    if (speculative) ++ctx_.stats->chunks_prefetched;
    map.emplace(ku.first, std::move(data));
    return Status::OK();
  }

  Status WaitAll(int period) {
    for (auto& [key, u] : units_[period]) {
      if (!u->slot) continue;
      const auto t0 = Clock::now();
      Status st = ctx_.loader->Wait(*u->slot);
      ctx_.stats->io_wait_ms += MsSince(t0);
      CKV_RETURN_IF_ERROR(st);
    }
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
        ctx_.cache->Insert(key, std::move(data));
        ctx_.cache->Feedback(key, top, 1.0);
      }
      for (const ChunkKey& key : scoring_keys_[period]) ctx_.cache->Feedback(key, top, 1.0);
      for (auto& [key, u] : units_[period]) {
        const int64_t chunk = chunk_of_.at(key);
        if (u->slot && u->slot->ready() && u->slot->status().ok())
          ctx_.cache->Insert(key, CopyOf(*u));
        const auto imp = importance_[period].find(chunk);
        ctx_.cache->Feedback(key, imp == importance_[period].end() ? 0.0 : imp->second, 1.0);
      }
    }
    scoring_keys_.erase(period);
    scoring_copies_.erase(period);
    units_[period].clear();
  }

  RequestContext ctx_;
  int c_ = 16, p_ = 8, periods_ = 0;
  int64_t kv_row_bytes_ = 0;
  AttentionShape shape_;
  std::vector<uint64_t> path_hash_;
  std::vector<std::vector<int64_t>> selections_;
  std::vector<std::map<ChunkKey, std::shared_ptr<UnitData>>> units_;
  std::map<ChunkKey, int64_t> chunk_of_;
  std::vector<std::map<int64_t, double>> importance_;
  std::vector<std::vector<std::shared_ptr<UnitData>>> scoring_units_;
  // Per period until it is finished: scoring units the cache served, and copies of the ones
  // read from SSD, to insert with their importance.
  std::map<int, std::vector<ChunkKey>> scoring_keys_;
  std::map<int, std::vector<std::pair<ChunkKey, ChunkCache::Data>>> scoring_copies_;
  std::set<int> finished_;
  // Weak: a slot's buffer returns to the bounded pool as soon as its layers are done.
  std::vector<std::weak_ptr<UnitSlot>> issued_;
};

}  // namespace

std::unique_ptr<KVSourcePolicy> MakeContiguousKVPolicy() {
  return std::make_unique<ContiguousKVPolicy>();
}

}  // namespace ckv
