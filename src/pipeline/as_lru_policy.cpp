// AS+LRU, the AttentionStore-like baseline: every request loads the whole prefix KV, layer by
// layer, with the next layer's reads (the next period's, for period-major units that hold p
// layers) in flight while the current layer computes; the engine's memory cache (LRU, as the
// benchmark configures it for this system) serves units it still holds.
#include <map>
#include <utility>

#include "pipeline/prefix_range_reader.h"

namespace ckv {
namespace {

class AsLruPolicy : public KVSourcePolicy {
 public:
  Status Begin(const RequestContext& ctx) override {
    ctx_ = ctx;
    const StoreLayout& layout = ctx.prefix->layout();
    if (layout.kind == LayoutKind::kImpress) {
      return Status::InvalidArgument("as-lru needs a ContiguousChunk layout, not IMPRESS's");
    }
    c_ = layout.chunk_tokens;
    p_ = layout.kind == LayoutKind::kContiguousPeriodMajor ? layout.period_layers : 1;
    groups_ = (ctx.config->num_layers + p_ - 1) / p_;
    kv_row_bytes_ = static_cast<int64_t>(ctx.config->kv_dim()) * 2;
    acct_ = {};
    reader_.Reset(ctx, &acct_);
    units_.assign(groups_, {});
    importance_.assign(groups_, {});
    requested_.assign(groups_, false);
    finished_.assign(groups_, false);
    selections_.assign(groups_, {});
    // The first layer's reads start now, before the suffix's first projection.
    return RequestGroup(0);
  }

  Result<PrefixContext> PrefixKV(int layer, const float*, int, const int32_t*,
                                 const KVSpan&) override {
    const int g = layer / p_;
    if (layer == g * p_) {
      if (g > 0) FinishGroup(g - 1);
      CKV_RETURN_IF_ERROR(RequestGroup(g));
      // Layer-wise pre-loading: the next group's reads stream while this one computes.
      if (ctx_.opts->prefetch && g + 1 < groups_) CKV_RETURN_IF_ERROR(RequestGroup(g + 1));
    }
    PrefixContext out;
    out.spans.reserve(ctx_.n_chunks);
    for (int64_t j = 0; j < ctx_.n_chunks; ++j) {
      const auto& u = units_[g][j];
      CKV_RETURN_IF_ERROR(reader_.Wait(*u));
      CKV_ASSIGN_OR_RETURN(Extent ext, ctx_.prefix->LocateExtent(layer, j));
      const std::byte* base = u->At(ext.offset);
      const int64_t tokens = std::min<int64_t>(c_, ctx_.prefix_tokens - j * c_);
      out.spans.push_back({base, base + static_cast<int64_t>(c_) * kv_row_bytes_, tokens, j * c_});
      out.chunks.push_back(j);
      out.keep_alive.push_back(u);
      acct_.attended_bytes += tokens * kv_row_bytes_ * 2;
      if (u->from_ssd()) acct_.attended_ssd_bytes += tokens * kv_row_bytes_ * 2;
    }
    return out;
  }

  void Observe(int layer, const PrefixContext& ctx, std::span<const float> mass) override {
    AccumulateChunkMass(ctx, mass, importance_[layer / p_]);
  }

  PolicyAccounting End() override {
    for (int g = 0; g < groups_; ++g) FinishGroup(g);
    reader_.Drain();
    return std::exchange(acct_, {});
  }

  std::vector<std::vector<int64_t>> Selections() const override { return selections_; }

 private:
  // Every chunk's unit of group g (one layer, or one period of p layers), from cache or SSD.
  Status RequestGroup(int g) {
    if (requested_[g]) return Status::OK();
    requested_[g] = true;
    const int first = g * p_;
    const int last = std::min(first + p_, ctx_.config->num_layers);
    auto& units = units_[g];
    units.reserve(ctx_.n_chunks);
    for (int64_t j = 0; j < ctx_.n_chunks; ++j) {
      CKV_ASSIGN_OR_RETURN(ReadUnit unit, ctx_.prefix->LocateUnit(first, j));
      auto prefix = ctx_.prefix;
      // The unit holds chunk j of every layer of the group: verify each extent once read.
      auto verify = [prefix, unit, j, first, last](const std::byte* bytes) -> Status {
        for (int l = first; l < last; ++l) {
          auto ext = prefix->LocateExtent(l, j);
          if (!ext.ok()) return ext.status();
          CKV_RETURN_IF_ERROR(
              prefix->VerifyExtent(l, j, KVPart::kKV, bytes + (ext->offset - unit.offset)));
        }
        return Status::OK();
      };
      auto r = reader_.Fetch(unit.file, unit.offset, unit.length,
                             reader_.Key(unit.file, RangeCut::kUnit, g, unit.offset),
                             std::move(verify), "G" + std::to_string(g) + " c" + std::to_string(j));
      reader_.Account(*r, /*scoring=*/false);
      units.push_back(std::move(r));
      selections_[g].push_back(j);
    }
    acct_.chunks_selected += ctx_.n_chunks;
    return Status::OK();
  }

  // The group is done: its units go into the cache (the cache keeps its own copy) and the
  // read buffers are released.
  void FinishGroup(int g) {
    if (finished_[g] || !requested_[g]) return;
    finished_[g] = true;
    for (size_t j = 0; j < units_[g].size(); ++j) {
      const auto& u = units_[g][j];
      reader_.Insert(*u);
      const auto imp = importance_[g].find(static_cast<int64_t>(j));
      reader_.Feedback(u->key, imp == importance_[g].end() ? 0.0 : imp->second, 1.0);
    }
    units_[g].clear();
  }

  RequestContext ctx_;
  PolicyAccounting acct_;
  PrefixRangeReader reader_;
  int c_ = 64, p_ = 1, groups_ = 0;
  int64_t kv_row_bytes_ = 0;
  std::vector<std::vector<std::shared_ptr<FetchedRange>>> units_;
  std::vector<std::map<int64_t, double>> importance_;
  std::vector<bool> requested_, finished_;
  std::vector<std::vector<int64_t>> selections_;
};

}  // namespace

std::unique_ptr<KVSourcePolicy> MakeAsLruPolicy() {
  return std::make_unique<AsLruPolicy>();
}

}  // namespace ckv
