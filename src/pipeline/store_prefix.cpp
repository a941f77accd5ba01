// Prefill-and-store: what `ckv cache put` and the benchmarks do to put a prefix in the store.
#include <algorithm>

#include "ckv/reprefill.h"
#include "engine/transformer.h"

namespace ckv {

Result<std::vector<PrefixInfo>> StorePrefix(const Model& model, PrefixStore& store,
                                            std::span<const StoreLayout> layouts,
                                            std::span<const int32_t> tokens,
                                            const std::function<void(double)>& progress) {
  if (tokens.empty()) return Status::InvalidArgument("nothing to store: empty token list");
  if (layouts.empty()) return Status::InvalidArgument("no layout to store");
  const ModelConfig& cfg = model.config();
  KVCache kv = model.NewCache(KVPrecision::kBF16, static_cast<int64_t>(tokens.size()));
  // Prefill in pieces so long documents report progress (and bound the activation memory).
  constexpr int64_t kPiece = 2048;
  const int64_t n = static_cast<int64_t>(tokens.size());
  const double prefill_share = 0.8;
  for (int64_t b = 0; b < n; b += kPiece) {
    const int64_t e = std::min(n, b + kPiece);
    CKV_RETURN_IF_ERROR(model.Forward(tokens.subspan(b, e - b), kv, nullptr));
    if (progress) progress(prefill_share * static_cast<double>(e) / n);
  }
  std::vector<KVLayerData> layers(cfg.num_layers);
  for (int l = 0; l < cfg.num_layers; ++l) {
    layers[l] = {static_cast<const uint16_t*>(kv.k(l)), static_cast<const uint16_t*>(kv.v(l))};
  }
  std::vector<PrefixInfo> out;
  const double per_layout = (1.0 - prefill_share) / static_cast<double>(layouts.size());
  for (size_t i = 0; i < layouts.size(); ++i) {
    CKV_ASSIGN_OR_RETURN(
        PrefixInfo info,
        store.Put(model.transformer().fingerprint(), cfg, layouts[i], tokens, layers,
                  [&](double f) {
                    if (progress)
                      progress(prefill_share + per_layout * (static_cast<double>(i) + f));
                  }));
    out.push_back(std::move(info));
  }
  return out;
}

Result<PrefixInfo> StorePrefix(const Model& model, PrefixStore& store, const StoreLayout& layout,
                               std::span<const int32_t> tokens,
                               const std::function<void(double)>& progress) {
  CKV_ASSIGN_OR_RETURN(auto infos,
                       StorePrefix(model, store, std::span(&layout, 1), tokens, progress));
  return infos.front();
}

}  // namespace ckv
