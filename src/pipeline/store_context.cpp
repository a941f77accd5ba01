// Storing a served request's context: the stored parent's KV is read back (exact, as it was
// computed) or, when the request's own KV was exact and covers more, taken from it; only the
// new tokens are computed, and the store writes only the new chunks. This
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

// How many of `tokens`' first rows `given` holds: the tokens both start with. -1 when its
// buffers do not have the model's shape.
int64_t SharedRows(const ExactContextKV& given, const ModelConfig& cfg,
                   std::span<const int32_t> tokens) {
  const size_t elems = given.tokens.size() * static_cast<size_t>(cfg.kv_dim());
  if (given.k.size() != static_cast<size_t>(cfg.num_layers) || given.v.size() != given.k.size())
    return -1;
  for (int l = 0; l < cfg.num_layers; ++l) {
    if (given.k[l].size() != elems || given.v[l].size() != elems) return -1;
  }
  return given.SharedPrefix(tokens);
}

// Copies the first `n` rows of every layer of `given` into `kv`.
void CopyGivenKV(const ExactContextKV& given, int64_t n, const ModelConfig& cfg, KVCache& kv) {
  const size_t bytes = static_cast<size_t>(n) * cfg.kv_dim() * sizeof(uint16_t);
  for (int l = 0; l < cfg.num_layers; ++l) {
    std::memcpy(kv.k(l), given.k[l].data(), bytes);
    std::memcpy(kv.v(l), given.v[l].data(), bytes);
  }
  kv.Advance(n);
}

// Model::Forward of `tokens` after kv's rows, each `layers_per_piece` layers (0: all) one call
// of `run`, so that a request waiting for the compute slot waits for a few layers, not for a
// whole store. The same layer calls as Forward: the same KV, bit for bit.
Status ForwardInPieces(const Model& model, std::span<const int32_t> tokens, KVCache& kv,
                       int layers_per_piece,
                       const std::function<Status(const std::function<Status()>&)>& run) {
  const ModelConfig& cfg = model.config();
  if (layers_per_piece <= 0 || layers_per_piece >= cfg.num_layers) {
    return run([&] { return model.Forward(tokens, kv, nullptr); });
  }
  for (int32_t id : tokens) {
    if (id < 0 || id >= cfg.vocab_size) {
      return Status::OutOfRange("token id " + std::to_string(id) + " is outside the vocabulary");
    }
  }
  const int n = static_cast<int>(tokens.size());
  const int64_t start = kv.size();
  if (start + n > std::min<int64_t>(kv.capacity(), cfg.max_position_embeddings)) {
    return Status::OutOfRange("context of " + std::to_string(start + n) +
                              " tokens exceeds the model's or the cache's");
  }
  const Transformer& tf = model.transformer();
  const size_t row_bytes = static_cast<size_t>(kv.kv_dim()) * kv.elem_bytes();
  std::vector<int32_t> positions(n);
  for (int i = 0; i < n; ++i) positions[i] = static_cast<int32_t>(start + i);
  std::vector<float> x(static_cast<size_t>(n) * cfg.hidden_size);
  Scratch scratch;
  for (int l0 = 0; l0 < cfg.num_layers; l0 += layers_per_piece) {
    const int l1 = std::min(cfg.num_layers, l0 + layers_per_piece);
    CKV_RETURN_IF_ERROR(run([&] {
      if (l0 == 0) tf.Embed(tokens, x.data());
      for (int l = l0; l < l1; ++l) {
        auto* kb = static_cast<unsigned char*>(kv.k(l));
        auto* vb = static_cast<unsigned char*>(kv.v(l));
        const Transformer::NewKV out{kb + start * row_bytes, vb + start * row_bytes};
        const KVSpan all{kb, vb, start + n, 0};
        tf.Layer(l, x.data(), n, positions.data(), out, DType::kBF16, {&all, 1}, scratch);
      }
      return Status::OK();
    }));
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
  const int64_t given =
      options.exact_kv != nullptr ? SharedRows(*options.exact_kv, cfg, tokens) : 0;
  if (given < 0) {
    return Status::InvalidArgument("exact_kv does not have the model's shape (" +
                                   std::to_string(cfg.num_layers) + " layers of " +
                                   std::to_string(cfg.kv_dim()) + " K/V values per token)");
  }
  // The first also_store_first tokens as their own entry (unless stored), then the whole
  // context, which then shares the first one's chunks.
  auto publish = [&](const std::vector<KVLayerData>& layers) -> Status {
    const int64_t first = options.also_store_first;
    if (first > 0 && first < n) {
      const auto head = tokens.first(first);
      const std::optional<PrefixInfo> have = store.FindLongestPrefix(fp, layout, head);
      if (!have || have->n_tokens != first) {
        CKV_ASSIGN_OR_RETURN(PrefixInfo info, store.Put(fp, cfg, layout, head, layers));
        out.first_info = std::move(info);
      }
    }
    CKV_ASSIGN_OR_RETURN(out.info, store.Put(fp, cfg, layout, tokens, layers));
    return Status::OK();
  };
  if (given == n) {
    // Everything was computed already: no parent read, no copy.
    std::vector<KVLayerData> layers(cfg.num_layers);
    for (int l = 0; l < cfg.num_layers; ++l) {
      layers[l] = {options.exact_kv->k[l].data(), options.exact_kv->v[l].data()};
    }
    out.given_tokens = n;
    CKV_RETURN_IF_ERROR(publish(layers));
    return out;
  }
  KVCache kv = model.NewCache(KVPrecision::kBF16, n);
  if (given > 0 && (!parent || given >= parent->n_tokens)) {
    CopyGivenKV(*options.exact_kv, given, cfg, kv);
    out.given_tokens = given;
  } else if (parent) {
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
    CKV_RETURN_IF_ERROR(
        ForwardInPieces(model, tokens.subspan(b, e - b), kv, options.layers_per_piece, run));
    b = e;
  }
  out.computed_tokens = n - out.reused_tokens - out.given_tokens;
  std::vector<KVLayerData> layers(cfg.num_layers);
  for (int l = 0; l < cfg.num_layers; ++l) {
    layers[l] = {static_cast<const uint16_t*>(kv.k(l)), static_cast<const uint16_t*>(kv.v(l))};
  }
  CKV_RETURN_IF_ERROR(publish(layers));
  return out;
}

}  // namespace ckv
