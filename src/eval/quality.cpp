#include "ckv/quality.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "ckv/prefix_store.h"
#include "engine/transformer.h"
#include "eval/nll.h"
#include "policy/chunk_selection.h"

namespace ckv {
namespace {

double MeanNll(const std::vector<float>& suffix_logits, int64_t ns, std::span<const int32_t> next,
               int vocab) {
  double total = 0;
  for (int64_t i = 0; i < ns; ++i)
    total += TokenNll(suffix_logits.data() + i * vocab, vocab, next[i]);
  return total / static_cast<double>(ns);
}

struct Acc {
  int64_t n = 0;
  double top1 = 0, kl = 0, nll = 0, full_nll = 0, attended = 0, read = 0, scoring_read = 0;
  int64_t probe_layers = 0, probe_votes = 0;
  int64_t overlap_shared = 0, overlap_selected = 0;
};

// Chunks period i+1 selects that period i selected too, and chunks period i+1 selects, both
// without the forced chunks (always in both). Their ratio is the share of a period's
// selection that speculating on the previous period's gets right; the paper reports 52-64%.
std::pair<int64_t, int64_t> AdjacentOverlap(const std::vector<std::vector<int64_t>>& selections,
                                            int64_t prefix_tokens, int chunk_tokens) {
  const int64_t n_chunks = (prefix_tokens + chunk_tokens - 1) / chunk_tokens;
  const auto forced_list = ForcedChunks(n_chunks, prefix_tokens - (n_chunks - 1) * chunk_tokens,
                                        chunk_tokens, SelectionBudget{});
  const std::set<int64_t> forced(forced_list.begin(), forced_list.end());
  int64_t shared = 0, selected = 0;
  for (size_t i = 1; i < selections.size(); ++i) {
    const std::set<int64_t> prev(selections[i - 1].begin(), selections[i - 1].end());
    for (int64_t c : selections[i]) {
      if (forced.count(c)) continue;
      ++selected;
      shared += prev.count(c);
    }
  }
  return {shared, selected};
}

}  // namespace

Result<std::vector<QualityRow>> EvaluateQuality(const Model& model, const std::string& text,
                                                const QualityOptions& opts,
                                                const std::function<void(double)>& progress) {
  if (model.tokenizer() == nullptr) return Status::InvalidArgument("model has no tokenizer");
  if (opts.budgets.empty() || opts.systems.empty())
    return Status::InvalidArgument("quality: --budgets and --systems must not be empty");
  for (double b : opts.budgets) {
    if (!(b > 0 && b <= 1))
      return Status::InvalidArgument("quality: budget " + std::to_string(b) + " is not in (0, 1]");
  }
  CKV_ASSIGN_OR_RETURN(std::vector<int32_t> ids, model.tokenizer()->Encode(text, false));
  const int vocab = model.config().vocab_size;
  const auto bos = model.tokenizer()->bos_id();
  StoreOptions so;
  so.sync = false;
  CKV_ASSIGN_OR_RETURN(auto store, PrefixStore::Open(opts.store_dir, so));
  const StoreLayout layout = StoreLayout::PeriodMajor(opts.chunk_tokens, opts.period);
  // One engine per layout: each system reads the layout it comes with (the reference, full
  // attention, is ContiguousKV at budget 1, which the tests hold equal to plain prefill).
  std::vector<StoreLayout> layouts = {layout};
  std::map<std::string, size_t> layout_of;  // system -> index into layouts / engines
  for (const std::string& system : opts.systems) {
    if (system == "random") {
      layout_of[system] = 0;
      continue;
    }
    ReprefillOptions probe;
    CKV_RETURN_IF_ERROR(ApplySystemName(system, probe));
    if (!SystemReadsStoredPrefix(probe.system)) {
      return Status::InvalidArgument("system recompute is full attention: nothing to evaluate");
    }
    const StoreLayout l = DefaultLayoutFor(probe.system, layout);
    auto it = std::find(layouts.begin(), layouts.end(), l);
    layout_of[system] = static_cast<size_t>(it - layouts.begin());
    if (it == layouts.end()) layouts.push_back(l);
  }
  std::vector<std::unique_ptr<ReprefillEngine>> engines;
  for (const StoreLayout& l : layouts) {
    ReprefillEngine::Config ec;
    ec.layout = l;
    CKV_ASSIGN_OR_RETURN(auto engine, ReprefillEngine::Create(model, *store, ec));
    engines.push_back(std::move(engine));
  }

  // The stored KV is bf16 whatever the model's dtype (2 bytes per element, K and V).
  const auto prefix_kv_bytes = [&](int64_t tokens) {
    return static_cast<double>(tokens) * model.config().num_layers * model.config().kv_dim() * 4;
  };
  std::map<std::tuple<std::string, double, int64_t, int64_t>, Acc> acc;
  const int64_t settings =
      static_cast<int64_t>(opts.prefix_tokens.size() * opts.suffix_tokens.size());
  int64_t done = 0;
  for (int64_t P : opts.prefix_tokens) {
    for (int64_t S : opts.suffix_tokens) {
      // Window = [BOS] + text tokens: P prefix tokens (BOS included), S suffix tokens, plus the
      // token after the suffix (the true continuation of its last position).
      const int64_t body = P - (bos ? 1 : 0) + S + 1;
      if (body > static_cast<int64_t>(ids.size())) {
        return Status::InvalidArgument("text too short for prefix " + std::to_string(P) +
                                       " + suffix " + std::to_string(S));
      }
      if (P + S + 1 > model.config().max_position_embeddings) {
        return Status::InvalidArgument("prefix + suffix exceed the model's context");
      }
      const int64_t span = static_cast<int64_t>(ids.size()) - body;
      for (int w = 0; w < opts.windows; ++w) {
        const int64_t off = opts.windows > 1 ? span * w / (opts.windows - 1) : 0;
        std::vector<int32_t> win;
        if (bos) win.push_back(*bos);
        win.insert(win.end(), ids.begin() + off, ids.begin() + off + body);
        const std::span<const int32_t> request(win.data(), P + S);
        const std::span<const int32_t> next(win.data() + P + 1, S);  // true next tokens
        CKV_ASSIGN_OR_RETURN(std::vector<PrefixInfo> infos,
                             StorePrefix(model, *store, layouts, request.first(P)));
        ReprefillOptions ro;
        ro.suffix_logits = true;
        ro.budget = 1.0;
        CKV_ASSIGN_OR_RETURN(ReprefillResult full, engines[0]->Run(request, ro));
        const auto full_lp = LogSoftmax(full.first_logits.data(), vocab);
        const int32_t full_top = Argmax(full.first_logits);
        const double full_nll = MeanNll(full.suffix_logits, S, next, vocab);
        for (const std::string& system : opts.systems) {
          for (double b : opts.budgets) {
            ReprefillOptions o = ro;
            o.budget = b;
            if (system == "random") {
              o.random_selection = true;
              o.random_seed = static_cast<uint64_t>(w);
            } else {
              CKV_RETURN_IF_ERROR(ApplySystemName(system, o));
            }
            CKV_ASSIGN_OR_RETURN(ReprefillResult r, engines[layout_of[system]]->Run(request, o));
            if (r.stats.prefix_id.empty()) {
              return Status::Internal(system + " did not use the stored prefix: " + r.stats.note);
            }
            const auto lp = LogSoftmax(r.first_logits.data(), vocab);
            // Chunk-level systems with periods (not token-level ones: their lists are tokens).
            const bool periods =
                r.stats.system == "contiguouskv" && r.selections.size() > 1 && b < 1.0;
            const auto [shared, selected] =
                periods ? AdjacentOverlap(r.selections, P, opts.chunk_tokens)
                        : std::pair<int64_t, int64_t>{0, 0};
            double kl = 0;
            for (int i = 0; i < vocab; ++i) kl += std::exp(full_lp[i]) * (full_lp[i] - lp[i]);
            for (int64_t setting_p : {P, int64_t{0}}) {
              Acc& a = acc[{system, b, setting_p, setting_p ? S : 0}];
              ++a.n;
              a.top1 += Argmax(r.first_logits) == full_top ? 1 : 0;
              a.kl += kl;
              a.nll += MeanNll(r.suffix_logits, S, next, vocab);
              a.full_nll += full_nll;
              a.attended += r.stats.attended_fraction;
              a.read += static_cast<double>(r.stats.ssd_bytes_read) / prefix_kv_bytes(P);
              a.scoring_read +=
                  static_cast<double>(r.stats.scoring_bytes_read) / prefix_kv_bytes(P);
              a.probe_layers += r.stats.probe_layers;
              a.probe_votes += r.stats.probe_vote_layers;
              a.overlap_shared += shared;
              a.overlap_selected += selected;
            }
          }
        }
        for (const PrefixInfo& info : infos) CKV_RETURN_IF_ERROR(store->Remove(info.id));
        if (progress) progress((done * opts.windows + w + 1.0) / (settings * opts.windows));
      }
      ++done;
    }
  }
  std::vector<QualityRow> rows;
  for (bool pooled : {false, true}) {
    for (const auto& [key, a] : acc) {
      const auto& [system, b, P, S] = key;
      if ((P == 0) != pooled) continue;
      QualityRow r;
      r.system = system;
      r.budget = b;
      r.prefix_tokens = P;
      r.suffix_tokens = S;
      r.windows = a.n;
      r.top1_agreement = a.top1 / a.n;
      r.mean_kl = a.kl / a.n;
      r.mean_nll = a.nll / a.n;
      r.full_mean_nll = a.full_nll / a.n;
      r.attended_fraction = a.attended / a.n;
      r.read_fraction = a.read / a.n;
      r.scoring_read_fraction = a.scoring_read / a.n;
      r.probe_vote_fraction =
          a.probe_layers > 0 ? static_cast<double>(a.probe_votes) / a.probe_layers : 0.0;
      r.adjacent_overlap = a.overlap_selected > 0
                               ? static_cast<double>(a.overlap_shared) / a.overlap_selected
                               : -1.0;
      rows.push_back(r);
    }
  }
  return rows;
}

}  // namespace ckv
