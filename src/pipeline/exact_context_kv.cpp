// A finished sequence's KV as one exact context (ReprefillResult::exact_kv): the prefix rows it
// attended (when they are all of them, in every layer) and its suffix and generated rows, in
// position order. A server's store of the context then computes nothing again.
#include <algorithm>
#include <cstring>

#include "pipeline/sequence.h"

namespace ckv {

std::shared_ptr<const ExactContextKV> ExactKVOf(const ReprefillSequence::Impl& s, int kv_dim) {
  if (s.stats.cancelled || s.ns <= 0 || s.len < s.ns) return nullptr;
  // Exact only when every layer attended every prefix row: the selection's ranges, sorted,
  // tile [0, n_p).
  for (const auto& dl : s.dctx.layers) {
    auto ranges = dl.ranges;
    std::sort(ranges.begin(), ranges.end());
    int64_t next = 0;
    for (auto [p0, nt] : ranges) {
      if (p0 != next) return nullptr;
      next += nt;
    }
    if (next != s.n_p) return nullptr;
  }
  if (s.dctx.layers.size() != s.suffix_k.size()) return nullptr;
  const int64_t fed = s.len - s.ns;  // generated tokens that went through the model
  if (fed > static_cast<int64_t>(s.res.generated_ids.size())) return nullptr;
  auto out = std::make_shared<ExactContextKV>();
  out->tokens = s.tokens;
  out->tokens.insert(out->tokens.end(), s.res.generated_ids.begin(),
                     s.res.generated_ids.begin() + fed);
  const int64_t n = s.n_p + s.len;
  const size_t row_elems = static_cast<size_t>(kv_dim);
  const size_t row_bytes = row_elems * sizeof(uint16_t);
  out->k.resize(s.suffix_k.size());
  out->v.resize(s.suffix_k.size());
  for (size_t l = 0; l < s.suffix_k.size(); ++l) {
    auto& k = out->k[l];
    auto& v = out->v[l];
    k.resize(static_cast<size_t>(n) * row_elems);
    v.resize(k.size());
    // The compact copies hold the ranges in the order they were attended.
    size_t off = 0;
    for (auto [p0, nt] : s.dctx.layers[l].ranges) {
      std::memcpy(k.data() + p0 * row_elems, s.dctx.layers[l].k.data() + off, nt * row_bytes);
      std::memcpy(v.data() + p0 * row_elems, s.dctx.layers[l].v.data() + off, nt * row_bytes);
      off += static_cast<size_t>(nt) * row_elems;
    }
    std::memcpy(k.data() + s.n_p * row_elems, s.suffix_k[l].data(), s.len * row_bytes);
    std::memcpy(v.data() + s.n_p * row_elems, s.suffix_v[l].data(), s.len * row_bytes);
  }
  return out;
}

}  // namespace ckv
