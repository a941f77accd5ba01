// IMPRESS (FAST'25) on its own store layout (64-token chunks, K and V in separate read units,
// a per-layer copy of the probe heads' keys). Per layer, identify-then-load is sequential, as
// the paper's design requires; only the probe keys, which no selection decides, are read a
// layer ahead. Per layer: load the probe keys; score each probe head (H2O: attention mass of the
// suffix queries per prefix token) and take its top k = ceil(r n) tokens; if the probe sets' mean
// pairwise Jaccard similarity exceeds t = j^0.6, j = (k/n) / (2 - k/n), the probes' voted set
// stands for every head; otherwise load every K chunk of the layer and take the top k per KV
// head. Then load the K and V chunks holding the selected tokens and attend, each KV head to
// its own tokens. Cache: the engine's, with IMPRESS's score (access frequency x moving
// average of the chunk's important-token fraction), fed through ChunkCache::Feedback.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <utility>

#include "common/clock.h"
#include "kernels/convert.h"
#include "pipeline/prefix_range_reader.h"
#include "policy/h2o_selection.h"
#include "policy/impress_selection.h"

namespace ckv {
namespace {

using Clock = SteadyClock;

class ImpressPolicy : public KVSourcePolicy {
 public:
  Status Begin(const RequestContext& ctx) override {
    ctx_ = ctx;
    const StoreLayout& layout = ctx.prefix->layout();
    if (layout.kind != LayoutKind::kImpress) {
      return Status::InvalidArgument(
          "impress needs the IMPRESS store layout (--layout impress), not " + layout.ToString());
    }
    const ModelConfig& cfg = *ctx.config;
    c_ = layout.chunk_tokens;
    hd_ = cfg.head_dim;
    kv_heads_ = cfg.num_kv_heads;
    kv_dim_ = cfg.kv_dim();
    probes_ = ChooseProbeHeads(ctx.prefix->probe_kv_heads(), cfg.num_heads, cfg.num_kv_heads,
                               layout.probe_heads);
    acct_ = {};
    reader_.Reset(ctx, &acct_);
    selections_.assign(cfg.num_layers, {});
    layers_identified_ = layers_voted_ = 0;
    jaccard_sum_ = threshold_sum_ = 0;
    probes_ahead_ = {};
    // The first layer's probe keys start loading now, before the suffix's first projection.
    if (ctx.opts->prefetch && Identifies()) FetchProbeKeys(0, /*ahead=*/true, probes_ahead_);
    return Status::OK();
  }

  Result<PrefixContext> PrefixKV(int layer, const float* q, int n_q, const int32_t* q_pos,
                                 const KVSpan& suffix_keys) override {
    const int64_t m = ctx_.n_chunks;
    const int64_t n = ctx_.prefix_tokens;
    const int64_t k = TokenBudget(ctx_.opts->budget, n);
    chunks_.assign(m, {});
    std::vector<std::vector<int64_t>> sets;  // one set for all heads, or one per KV head
    if (k >= n) {
      sets.push_back(TopKTokens(std::vector<float>(n, 0.f), n));  // everything: no identification
    } else {
      const auto t0 = Clock::now();
      CKV_ASSIGN_OR_RETURN(auto probe_scores, ScoreProbes(layer, q, n_q, q_pos, suffix_keys));
      ProbeDecision d = DecideFromProbes(probe_scores, k, kImpressAlpha);
      ++layers_identified_;
      jaccard_sum_ += d.jaccard;
      threshold_sum_ += d.threshold;
      if (d.use_vote || ctx_.opts->impress_always_vote) {
        ++layers_voted_;
        sets.push_back(d.use_vote ? std::move(d.voted) : VotedSet(probe_scores, k));
      } else {
        // The probes disagree: every head's keys, and a top-k per KV head.
        for (int64_t j = 0; j < m; ++j) CKV_RETURN_IF_ERROR(RequestPart(layer, j, KVPart::kK));
        CKV_ASSIGN_OR_RETURN(auto head_scores, ScoreAllHeads(q, n_q, q_pos, suffix_keys));
        sets = PerHeadTopK(head_scores, k);
      }
      acct_.scoring_ms += MsSince(t0);
    }

    // Load the chunks holding any selected token (K and V units of 64 tokens).
    const std::vector<int64_t> needed = ChunksOfTokens(sets, c_);
    for (int64_t j : needed) {
      chunks_[j].needed = true;
      CKV_RETURN_IF_ERROR(RequestPart(layer, j, KVPart::kK));
      CKV_RETURN_IF_ERROR(RequestPart(layer, j, KVPart::kV));
    }
    // The next layer's probe keys do not depend on this selection: read them while this
    // layer's chunks load and it computes (after the chunks, so they queue first).
    if (ctx_.opts->prefetch && Identifies() && layer + 1 < ctx_.config->num_layers) {
      FetchProbeKeys(layer + 1, /*ahead=*/true, probes_ahead_);
    }
    for (int64_t j : needed) {
      CKV_RETURN_IF_ERROR(reader_.Wait(*chunks_[j].k));
      CKV_RETURN_IF_ERROR(reader_.Wait(*chunks_[j].v));
    }
    selections_[layer] = needed;

    PrefixContext out;
    if (sets.size() == 1) {
      SharedSpans(sets[0], out);
    } else {
      GatherPerHead(sets, out);
    }
    for (const auto& set : sets) {
      for (int64_t t : set) chunks_[t / c_].selected_pairs += sets.size() == 1 ? kv_heads_ : 1;
    }

    // Accounting and cache feedback. K units of chunks without a selected token were read for
    // identification only (the fallback's full-key scoring).
    for (int64_t j = 0; j < m; ++j) {
      Chunk& ch = chunks_[j];
      const double frac = static_cast<double>(ch.selected_pairs) /
                          (static_cast<double>(kv_heads_) * static_cast<double>(Tokens(j)));
      for (const auto* r : {&ch.k, &ch.v}) {
        if (!*r) continue;
        if (ch.needed && (*r)->from_ssd()) {
          acct_.attended_ssd_bytes += ch.selected_pairs * hd_ * 2;  // K or V rows
        }
        reader_.Account(**r, /*scoring=*/!ch.needed);
        reader_.Insert(**r);
        reader_.Feedback((*r)->key, frac, frac);
        out.keep_alive.push_back(*r);
      }
    }
    acct_.chunks_selected += static_cast<int64_t>(needed.size());
    acct_.attended_bytes += k * static_cast<int64_t>(kv_dim_) * 2 * 2;
    return out;
  }

  // IMPRESS's cache score uses the selection (fed in PrefixKV), not the observed attention.
  void Observe(int, const PrefixContext&, std::span<const float>) override {}

  PolicyAccounting End() override {
    chunks_.clear();
    probes_ahead_ = {};
    reader_.Drain();
    acct_.probe_layers = layers_identified_;
    acct_.probe_vote_layers = layers_voted_;
    if (layers_identified_ > 0) {
      char buf[160];
      std::snprintf(buf, sizeof buf,
                    "impress: probe vote used in %d of %d layers (mean Jaccard %.3f, threshold "
                    "%.3f)",
                    layers_voted_, layers_identified_, jaccard_sum_ / layers_identified_,
                    threshold_sum_ / layers_identified_);
      acct_.note = buf;
    }
    return std::exchange(acct_, {});
  }

  std::vector<std::vector<int64_t>> Selections() const override { return selections_; }

 private:
  struct Chunk {
    std::shared_ptr<FetchedRange> k, v;
    uint64_t k_off = 0, v_off = 0;  // extent offsets
    int64_t selected_pairs = 0;     // (token, KV head) pairs selected in the chunk
    bool needed = false;
  };

  int64_t Tokens(int64_t j) const { return std::min<int64_t>(c_, ctx_.prefix_tokens - j * c_); }

  Status RequestPart(int layer, int64_t j, KVPart part) {
    auto& slot = part == KVPart::kK ? chunks_[j].k : chunks_[j].v;
    if (slot) return Status::OK();
    CKV_ASSIGN_OR_RETURN(ReadUnit unit, ctx_.prefix->LocateUnit(layer, j, part));
    CKV_ASSIGN_OR_RETURN(Extent ext, ctx_.prefix->LocateExtent(layer, j, part));
    (part == KVPart::kK ? chunks_[j].k_off : chunks_[j].v_off) = ext.offset;
    auto prefix = ctx_.prefix;
    auto verify = [prefix, layer, j, part, ext, unit](const std::byte* bytes) {
      return prefix->VerifyExtent(layer, j, part, bytes + (ext.offset - unit.offset));
    };
    slot = reader_.Fetch(unit.file, unit.offset, unit.length,
                         reader_.Key(unit.file, RangeCut::kUnit, layer, unit.offset),
                         std::move(verify),
                         std::string(part == KVPart::kK ? "K" : "V") + " L" +
                             std::to_string(layer) + " c" + std::to_string(j));
    return Status::OK();
  }

  // One layer's probe-key copy: its blocks and their reads (null: not issued yet).
  struct ProbeKeys {
    int layer = -1;
    std::vector<LayerBlock> blocks;
    std::vector<std::shared_ptr<FetchedRange>> got;
  };

  // Whether requests identify tokens at all (not at budget 1, where everything is selected).
  bool Identifies() const {
    const int64_t n = ctx_.prefix_tokens;
    return TokenBudget(ctx_.opts->budget, n) < n;
  }

  // Issues the reads of `layer`'s probe-key copy that `pk` does not hold yet. Ahead of need,
  // only what the prefetch pool has room for.
  void FetchProbeKeys(int layer, bool ahead, ProbeKeys& pk) {
    if (pk.layer != layer) {
      pk.layer = layer;
      pk.blocks = ctx_.prefix->ProbeKeyBlocks(layer);
      pk.got.assign(pk.blocks.size(), nullptr);
    }
    auto prefix = ctx_.prefix;
    for (size_t i = 0; i < pk.blocks.size(); ++i) {
      if (pk.got[i]) continue;
      const LayerBlock& b = pk.blocks[i];
      auto verify = [prefix, b, layer](const std::byte* bytes) {
        return prefix->VerifyBlock(b, layer, bytes);
      };
      const ChunkKey key = reader_.Key(b.unit.file, RangeCut::kUnit, layer, b.unit.offset);
      std::string label = "probe L" + std::to_string(layer);
      pk.got[i] = ahead ? reader_.FetchAhead(b.unit.file, b.unit.offset, b.unit.length, key,
                                             std::move(verify), std::move(label))
                        : reader_.Fetch(b.unit.file, b.unit.offset, b.unit.length, key,
                                        std::move(verify), std::move(label));
    }
  }

  // Loads the layer's probe-key copy (most of it read ahead) and scores each probe head.
  Result<std::vector<std::vector<float>>> ScoreProbes(int layer, const float* q, int n_q,
                                                      const int32_t* q_pos,
                                                      const KVSpan& suffix_keys) {
    const int64_t n = ctx_.prefix_tokens;
    ProbeKeys keys_read = std::move(probes_ahead_);
    probes_ahead_ = {};
    FetchProbeKeys(layer, /*ahead=*/false, keys_read);
    const auto& blocks = keys_read.blocks;
    const auto& got = keys_read.got;
    for (const auto& r : got) CKV_RETURN_IF_ERROR(reader_.Wait(*r));
    for (const auto& r : got) {
      reader_.Account(*r, /*scoring=*/true);
      reader_.Insert(*r);
      reader_.Feedback(r->key, 1.0, 1.0);  // every probe key is used by every request
    }
    // One pass of the per-head mass kernel over the probe-key copy as it was read: block bytes
    // are [tokens][copy KV heads][hd] bf16, i.e. spans of a model with those KV heads. Each copy
    // head is attended by the query heads of the probes that read it (per-query-head probes
    // all read one head; KV-head probes bring their group), the same count for every head.
    const auto& pk = ctx_.prefix->probe_kv_heads();
    const int np = static_cast<int>(pk.size());
    std::vector<std::vector<int>> heads_of(np);
    std::vector<std::pair<int, size_t>> probe_rows;  // per probe: copy head, first row in it
    for (size_t p = 0; p < probes_.kv_heads.size(); ++p) {
      const auto it = std::find(pk.begin(), pk.end(), probes_.kv_heads[p]);
      if (it == pk.end()) return Status::Internal("probe KV head missing from the probe copy");
      const int pi = static_cast<int>(it - pk.begin());
      probe_rows.emplace_back(pi, heads_of[pi].size());
      for (int h : probes_.q_heads[p]) heads_of[pi].push_back(h);
    }
    const int per_head = static_cast<int>(heads_of[0].size());
    for (const auto& hs : heads_of) {
      if (static_cast<int>(hs.size()) != per_head) {
        return Status::Internal("probe heads read the probe copy's KV heads unevenly");
      }
    }
    const int sub_heads = np * per_head;
    std::vector<float> qs(static_cast<size_t>(n_q) * sub_heads * hd_);
    for (int i = 0; i < n_q; ++i) {
      for (int pi = 0; pi < np; ++pi) {
        for (int r = 0; r < per_head; ++r) {
          const float* src =
              q + (static_cast<size_t>(i) * ctx_.config->num_heads + heads_of[pi][r]) * hd_;
          std::copy(src, src + hd_,
                    qs.data() + ((static_cast<size_t>(i) * np + pi) * per_head + r) * hd_);
        }
      }
    }
    const int64_t ns = suffix_keys.n_tokens;
    std::vector<uint16_t> suffix(static_cast<size_t>(ns) * np * hd_);
    const auto* sk = static_cast<const uint16_t*>(suffix_keys.k);
    for (int64_t i = 0; i < ns; ++i) {
      for (int pi = 0; pi < np; ++pi) {
        std::memcpy(suffix.data() + (i * np + pi) * hd_, sk + i * kv_dim_ + pk[pi] * hd_, hd_ * 2);
      }
    }
    std::vector<KVSpan> spans;
    for (size_t bi = 0; bi < blocks.size(); ++bi) {
      const int64_t t0 = blocks[bi].first_chunk * c_;
      const int64_t tokens = std::min<int64_t>(blocks[bi].n_chunks * c_, n - t0);
      if (tokens <= 0) continue;
      spans.push_back({got[bi]->At(blocks[bi].extent.offset), nullptr, tokens, t0});
    }
    spans.push_back({suffix.data(), nullptr, ns, suffix_keys.pos_begin});
    const int64_t total = n + ns;
    std::vector<float> head_mass(static_cast<size_t>(sub_heads) * total, 0.f);
    AttentionMassPerHead(qs.data(), n_q, q_pos, spans,
                         AttentionShape{sub_heads, np, hd_, DType::kBF16}, head_mass.data());
    std::vector<std::vector<float>> scores;
    for (size_t p = 0; p < probes_.kv_heads.size(); ++p) {
      std::vector<float> score(n, 0.f);
      const auto [pi, first_row] = probe_rows[p];
      for (size_t r = 0; r < probes_.q_heads[p].size(); ++r) {
        const float* row =
            head_mass.data() + (static_cast<size_t>(pi) * per_head + first_row + r) * total;
        for (int64_t t = 0; t < n; ++t) score[t] += row[t];
      }
      scores.push_back(std::move(score));
    }
    return scores;
  }

  // Fallback: per KV head mass (summed over its query heads) from the full K chunks, in one
  // pass of the per-head kernel over the K units as they were read.
  Result<std::vector<std::vector<float>>> ScoreAllHeads(const float* q, int n_q,
                                                        const int32_t* q_pos,
                                                        const KVSpan& suffix_keys) {
    const int64_t n = ctx_.prefix_tokens;
    for (const Chunk& ch : chunks_) CKV_RETURN_IF_ERROR(reader_.Wait(*ch.k));
    const int heads = ctx_.config->num_heads;
    const int group = heads / kv_heads_;
    std::vector<KVSpan> spans;
    for (size_t j = 0; j < chunks_.size(); ++j) {
      const Chunk& ch = chunks_[j];
      spans.push_back({ch.k->At(ch.k_off), nullptr, Tokens(static_cast<int64_t>(j)),
                       static_cast<int64_t>(j) * c_});
    }
    spans.push_back({suffix_keys.k, nullptr, suffix_keys.n_tokens, suffix_keys.pos_begin});
    const int64_t total = n + suffix_keys.n_tokens;
    std::vector<float> head_mass(static_cast<size_t>(heads) * total, 0.f);
    AttentionMassPerHead(q, n_q, q_pos, spans, AttentionShape{heads, kv_heads_, hd_, DType::kBF16},
                         head_mass.data());
    std::vector<std::vector<float>> scores(kv_heads_, std::vector<float>(n, 0.f));
    for (int h = 0; h < heads; ++h) {
      const float* row = head_mass.data() + static_cast<size_t>(h) * total;
      for (int64_t t = 0; t < n; ++t) scores[h / group][t] += row[t];
    }
    return scores;
  }

  // One set for all heads: spans over runs of consecutive selected tokens inside a chunk,
  // pointing into the loaded K and V units (at their real positions).
  void SharedSpans(const std::vector<int64_t>& sel, PrefixContext& out) const {
    const int64_t row_bytes = static_cast<int64_t>(kv_dim_) * 2;
    for (size_t i = 0; i < sel.size();) {
      const int64_t t = sel[i];
      const int64_t j = t / c_;
      size_t e = i + 1;
      while (e < sel.size() && sel[e] == sel[e - 1] + 1 && sel[e] / c_ == j) ++e;
      const Chunk& ch = chunks_[j];
      const int64_t row = t - j * c_;
      out.spans.push_back({ch.k->At(ch.k_off) + row * row_bytes,
                           ch.v->At(ch.v_off) + row * row_bytes, static_cast<int64_t>(e - i), t});
      out.chunks.push_back(j);
      i = e;
    }
  }

  // Per-head sets: compact rows where each KV head's slice holds its own tokens (see
  // GatherHeadRows). One copy of k rows per layer, the price of per-head selection with a
  // kernel that takes one context for all heads.
  void GatherPerHead(const std::vector<std::vector<int64_t>>& sets, PrefixContext& out) const {
    const size_t k = sets[0].size();
    auto kbuf = std::make_shared<std::vector<uint16_t>>(k * kv_dim_);
    auto vbuf = std::make_shared<std::vector<uint16_t>>(k * kv_dim_);
    const TokenRows row = [this](int64_t t) {
      const Chunk& ch = chunks_[t / c_];
      const int64_t off = (t % c_) * kv_dim_;
      return std::make_pair(reinterpret_cast<const uint16_t*>(ch.k->At(ch.k_off)) + off,
                            reinterpret_cast<const uint16_t*>(ch.v->At(ch.v_off)) + off);
    };
    GatherHeadRows(sets, hd_, row, kbuf->data(), vbuf->data());
    // Position 0..k-1: every prefix key precedes every suffix query, so these positions only
    // order the rows.
    out.spans.push_back({kbuf->data(), vbuf->data(), static_cast<int64_t>(k), 0});
    out.chunks.push_back(-1);  // rows mix chunks (per head)
    out.keep_alive.push_back(kbuf);
    out.keep_alive.push_back(vbuf);
  }

  RequestContext ctx_;
  PolicyAccounting acct_;
  PrefixRangeReader reader_;
  int c_ = 64, hd_ = 0, kv_heads_ = 0, kv_dim_ = 0;
  ProbeHeads probes_;
  std::vector<Chunk> chunks_;  // the current layer's
  ProbeKeys probes_ahead_;     // the next layer's probe keys, read ahead
  std::vector<std::vector<int64_t>> selections_;
  int layers_identified_ = 0, layers_voted_ = 0;
  double jaccard_sum_ = 0, threshold_sum_ = 0;
};

}  // namespace

std::unique_ptr<KVSourcePolicy> MakeImpressPolicy() {
  return std::make_unique<ImpressPolicy>();
}

}  // namespace ckv
