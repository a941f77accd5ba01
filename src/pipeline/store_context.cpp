// Storing a served request's context: the stored parent's KV is read back (exact, as it was
// computed), only the new tokens are computed, and the store writes only the new chunks. This
// is what makes automatic prefix caching cheap for multi-turn conversations: turn t pays for
// its own tokens, not for the whole conversation again.
#include <algorithm>
#include <cstring>
#include <optional>

#include "ckv/reprefill.h"
#include "engine/transformer.h"

namespace ckv {
namespace {

// Copies the stored prefix's K/V rows (all layers, its first n tokens) into `kv`.
Status LoadStoredKV(const PrefixHandle& h, int64_t n, KVCache& kv) {
  const int c = h.chunk_tokens();
  const int kv_dim = h.kv_dim();
  const size_t row_bytes = static_cast<size_t>(kv_dim) * sizeof(uint16_t);
  std::vector<uint16_t> k(static_cast<size_t>(c) * kv_dim), v(k.size());
  for (int l = 0; l < h.num_layers(); ++l) {
    auto* k_out = static_cast<unsigned char*>(kv.k(l));
    auto* v_out = static_cast<unsigned char*>(kv.v(l));
    for (int64_t j = 0; j * c < n; ++j) {
      CKV_RETURN_IF_ERROR(h.ReadLayerChunk(l, j, k.data(), v.data()));
      const int64_t rows = std::min<int64_t>(c, n - j * c);
      std::memcpy(k_out + j * c * row_bytes, k.data(), rows * row_bytes);
      std::memcpy(v_out + j * c * row_bytes, v.data(), rows * row_bytes);
    }
  }
  kv.Advance(n);
  return Status::OK();
}

}  // namespace

Result<StoredContext> StoreContext(const Model& model, PrefixStore& store,
                                   const StoreLayout& layout, std::span<const int32_t> tokens,
                                   const StoreContextOptions& options) {
  if (tokens.empty()) return Status::InvalidArgument("nothing to store: empty token list");
  if (options.piece_tokens <= 0) return Status::InvalidArgument("piece_tokens must be > 0");
  const ModelConfig& cfg = model.config();
  const uint64_t fp = model.transformer().fingerprint();
  const int64_t n = static_cast<int64_t>(tokens.size());
  auto run = [&](const std::function<Status()>& f) {
    return options.run_piece ? options.run_piece(f) : f();
  };

  StoredContext out;
  std::optional<PrefixInfo> parent = store.FindLongestPrefix(fp, layout, tokens);
  if (parent && parent->n_tokens == n) {
    // Already stored (and touched by the lookup). Never Put here without KV: if the entry
    // vanished meanwhile (evicted, quarantined), Put would publish whatever the cache holds.
    out.info = *parent;
    out.reused_tokens = n;
    return out;
  }
  KVCache kv = model.NewCache(KVPrecision::kBF16, n);
  if (parent) {
    if (auto handle = store.OpenPrefix(parent->id); handle.ok()) {
      Status st = LoadStoredKV(**handle, parent->n_tokens, kv);
      if (st.ok()) {
        out.reused_tokens = parent->n_tokens;
      } else {
        kv.Truncate(0);  // The handle quarantined the prefix; compute everything.
      }
    }
  }
  // Pieces of piece_tokens; a short last piece is folded into the one before it, so that no
  // piece but a short context's only one takes the few-row (GEMV) path a prefill would not.
  constexpr int64_t kShort = 16;  // above Linear::kGemvMaxRows
  for (int64_t b = kv.size(); b < n;) {
    int64_t e = std::min(n, b + options.piece_tokens);
    if (n - e > 0 && n - e < kShort) e = n;
    CKV_RETURN_IF_ERROR(run([&] { return model.Forward(tokens.subspan(b, e - b), kv, nullptr); }));
    b = e;
  }
  out.computed_tokens = n - out.reused_tokens;
  std::vector<KVLayerData> layers(cfg.num_layers);
  for (int l = 0; l < cfg.num_layers; ++l) {
    layers[l] = {static_cast<const uint16_t*>(kv.k(l)), static_cast<const uint16_t*>(kv.v(l))};
  }
  CKV_ASSIGN_OR_RETURN(out.info, store.Put(fp, cfg, layout, tokens, layers));
  return out;
}

}  // namespace ckv
