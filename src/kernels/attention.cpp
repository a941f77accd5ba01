#include "kernels/attention.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/convert.h"
#include "kernels/intrinsics.h"
#include "kernels/transpose.h"
#include "kernels/vec_math.h"

namespace ckv {
namespace {

// Keys are processed in tiles of kTile; scores of one query row against one tile form one
// vector, so the QK^T product needs no horizontal reductions.
constexpr int kTile = 16;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

struct Tile {
  std::vector<float> kt;  // [head_dim][kTile], transposed keys
  std::vector<float> v;   // [kTile][head_dim]
  int64_t pos[kTile];     // position of each key (increasing)
  int n = 0;              // valid keys in the tile
};

// Walks the keys of all spans in order. Tiles are cut from this concatenated sequence, not
// per span, so attending to a context split into chunk spans performs exactly the same
// arithmetic as attending to the same keys stored contiguously.
class KeyCursor {
 public:
  explicit KeyCursor(std::span<const KVSpan> spans) : spans_(spans) { Skip(); }
  bool done() const { return span_ >= spans_.size(); }
  int64_t pos() const { return spans_[span_].pos_begin + offset_; }
  const KVSpan& span() const { return spans_[span_]; }
  int64_t offset() const { return offset_; }
  void Next() {
    ++offset_;
    Skip();
  }

 private:
  void Skip() {
    while (span_ < spans_.size() && offset_ >= spans_[span_].n_tokens) {
      ++span_;
      offset_ = 0;
    }
  }
  std::span<const KVSpan> spans_;
  size_t span_ = 0;
  int64_t offset_ = 0;
};

#if defined(__AVX512F__)
// A tile of bf16 keys and values converted with vector transposes: 32 dimensions of 16 keys
// are one 16 x 16 matrix of 32-bit pairs. Decode attends with one query's 7-14 head rows per
// tile, too few to amortize converting and transposing key by key (that was 40% of a
// single-query Attention). Same values as the key-by-key path: bf16 -> f32 is exact.
void LoadTileBf16(const unsigned char* const* krow, const unsigned char* const* vrow, int n, int hd,
                  bool with_values, Tile& tile) {
  float* kt = tile.kt.data();
  const __m512i high_half = _mm512_set1_epi32(static_cast<int>(0xFFFF0000u));
  for (int b = 0; b < hd; b += 32) {
    __m512i r[kTile];
    for (int j = 0; j < kTile; ++j) {
      r[j] =
          j < n ? _mm512_loadu_si512(krow[j] + static_cast<size_t>(b) * 2) : _mm512_setzero_si512();
    }
    Transpose16x16Epi32(r);
    // Pair p holds dimension b + 2p in its low half and b + 2p + 1 in its high half.
    for (int p = 0; p < kTile; ++p) {
      _mm512_storeu_si512(kt + (b + 2 * p) * kTile, _mm512_slli_epi32(r[p], 16));
      _mm512_storeu_si512(kt + (b + 2 * p + 1) * kTile, _mm512_and_si512(r[p], high_half));
    }
  }
  if (!with_values) return;
  for (int j = 0; j < kTile; ++j) {
    float* dst = tile.v.data() + static_cast<size_t>(j) * hd;
    if (j < n) {
      Bf16ToF32Row(reinterpret_cast<const uint16_t*>(vrow[j]), dst, hd);
    } else {
      std::fill_n(dst, hd, 0.f);
    }
  }
}
#endif

// Loads the next (up to) kTile keys with position <= max_pos of KV head g from the cursor.
void LoadTile(KeyCursor& cur, int64_t max_pos, int g, const AttentionShape& shape, Tile& tile,
              std::vector<float>& row, bool with_values = true) {
  const int hd = shape.head_dim;
  const int64_t kv_stride = static_cast<int64_t>(shape.num_kv_heads) * hd;
  const size_t esize = DTypeSize(shape.kv_dtype);
  const unsigned char* krow[kTile];
  const unsigned char* vrow[kTile] = {};
  int n = 0;
  for (; n < kTile && !cur.done() && cur.pos() <= max_pos; ++n, cur.Next()) {
    const int64_t off = (cur.offset() * kv_stride + static_cast<int64_t>(g) * hd) * esize;
    krow[n] = static_cast<const unsigned char*>(cur.span().k) + off;
    if (with_values) vrow[n] = static_cast<const unsigned char*>(cur.span().v) + off;
    tile.pos[n] = cur.pos();
  }
  tile.n = n;
#if defined(__AVX512F__)
  if (shape.kv_dtype == DType::kBF16 && hd % 32 == 0) {
    LoadTileBf16(krow, vrow, n, hd, with_values, tile);
    return;
  }
#endif
  for (int j = 0; j < n; ++j) {
    ToF32Row(krow[j], shape.kv_dtype, row.data(), hd);
    for (int d = 0; d < hd; ++d) tile.kt[d * kTile + j] = row[d];
    if (with_values) ToF32Row(vrow[j], shape.kv_dtype, tile.v.data() + j * hd, hd);
  }
  for (int j = n; j < kTile; ++j) {
    for (int d = 0; d < hd; ++d) tile.kt[d * kTile + j] = 0.f;
    if (with_values) std::fill_n(tile.v.data() + j * hd, hd, 0.f);
  }
}

// Keys of the tile visible to a query at q_pos (positions increase within a tile).
inline int VisibleInTile(const Tile& tile, int64_t q_pos) {
  if (tile.n == 0 || tile.pos[0] > q_pos) return 0;
  if (tile.pos[tile.n - 1] <= q_pos) return tile.n;
  int n = 0;
  while (n < tile.n && tile.pos[n] <= q_pos) ++n;
  return n;
}

// scores[j] = q . k_j for the first `limit` keys of the tile; the other lanes get -inf.
inline void TileScores(const float* q, const Tile& tile, int hd, int limit, float* scores) {
#if defined(__AVX512F__)
  if (hd % 2 == 0) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    const float* kt = tile.kt.data();
    for (int d = 0; d < hd; d += 2) {
      acc0 = _mm512_fmadd_ps(_mm512_set1_ps(q[d]), _mm512_loadu_ps(kt + d * kTile), acc0);
      acc1 = _mm512_fmadd_ps(_mm512_set1_ps(q[d + 1]), _mm512_loadu_ps(kt + (d + 1) * kTile), acc1);
    }
    const __mmask16 valid = static_cast<__mmask16>((1u << limit) - 1u);
    _mm512_storeu_ps(scores,
                     _mm512_mask_mov_ps(_mm512_set1_ps(kNegInf), valid, _mm512_add_ps(acc0, acc1)));
    return;
  }
#endif
  float acc[kTile] = {0};
  for (int d = 0; d < hd; ++d) {
    const float qd = q[d];
    const float* kd = tile.kt.data() + d * kTile;
    for (int j = 0; j < kTile; ++j) acc[j] += qd * kd[j];
  }
  for (int j = 0; j < kTile; ++j) {
    scores[j] = j < limit ? acc[j] : kNegInf;
  }
}

inline void ExpTile(const float* s, float m, float* p) {
#if defined(__AVX512F__)
  static_assert(kTile == 16);
  const __m512 x = _mm512_loadu_ps(s);
  const __mmask16 valid = _mm512_cmp_ps_mask(x, _mm512_set1_ps(kNegInf), _CMP_NEQ_OQ);
  _mm512_storeu_ps(p, _mm512_maskz_mov_ps(valid, Exp512(_mm512_sub_ps(x, _mm512_set1_ps(m)))));
#else
  for (int j = 0; j < kTile; ++j) p[j] = s[j] == kNegInf ? 0.f : std::exp(s[j] - m);
#endif
}

#if defined(__AVX512F__)
// R query rows against one key tile, each row's online-softmax update of (m, l, o); HDV =
// head_dim / 16, `limit` = keys of the tile a row may see (causal and tile length). Every row
// runs the same operations in the same order whatever R is and whichever rows share the tile,
// so its output bits do not depend on the grouping. One row alone is two chains of head_dim / 2
// dependent FMAs for its scores and HDV chains of `limit` for P.V: latency-bound, ~1/3 of the
// FMA rate; R rows interleave R times as many chains and load each key row once for all of
// them. `rows[i]` indexes q (stride head_dim), limit, m, l and o.
template <int HDV, int R>
inline void RowsTile512(const float* q, const Tile& tile, const int* rows, const int* limit,
                        float* m, float* l, float* o) {
  constexpr int hd = HDV * 16;
  __m512 acc0[R], acc1[R];
  for (int i = 0; i < R; ++i) acc0[i] = acc1[i] = _mm512_setzero_ps();
  const float* kt = tile.kt.data();
  for (int d = 0; d < hd; d += 2) {
    const __m512 k0 = _mm512_loadu_ps(kt + d * kTile);
    const __m512 k1 = _mm512_loadu_ps(kt + (d + 1) * kTile);
    for (int i = 0; i < R; ++i) {
      const float* qi = q + rows[i] * hd;
      acc0[i] = _mm512_fmadd_ps(_mm512_set1_ps(qi[d]), k0, acc0[i]);
      acc1[i] = _mm512_fmadd_ps(_mm512_set1_ps(qi[d + 1]), k1, acc1[i]);
    }
  }
  alignas(64) float pj[R][kTile];
  __m512 oc[R][HDV];
  int common = kTile;  // keys every row of the group sees
  for (int i = 0; i < R; ++i) {
    const int r = rows[i];
    const __mmask16 valid = static_cast<__mmask16>((1u << limit[r]) - 1u);
    const __m512 sc =
        _mm512_mask_mov_ps(_mm512_set1_ps(kNegInf), valid, _mm512_add_ps(acc0[i], acc1[i]));
    const float m_new = std::max(m[r], _mm512_reduce_max_ps(sc));
    const __m512 p = _mm512_maskz_mov_ps(valid, Exp512(_mm512_sub_ps(sc, _mm512_set1_ps(m_new))));
    float* orow = o + r * hd;
    if (m_new != m[r]) {
      const float alpha = m[r] == kNegInf ? 0.f : std::exp(m[r] - m_new);
      const __m512 a = _mm512_set1_ps(alpha);
      for (int c = 0; c < HDV; ++c)
        _mm512_storeu_ps(orow + 16 * c, _mm512_mul_ps(a, _mm512_loadu_ps(orow + 16 * c)));
      l[r] *= alpha;
      m[r] = m_new;
    }
    l[r] += _mm512_reduce_add_ps(p);
    _mm512_store_ps(pj[i], p);
    for (int c = 0; c < HDV; ++c) oc[i][c] = _mm512_loadu_ps(orow + 16 * c);
    common = std::min(common, limit[r]);
  }
  const float* v = tile.v.data();
  int j = 0;
  for (; j < common; ++j) {
    for (int c = 0; c < HDV; ++c) {
      const __m512 vj = _mm512_loadu_ps(v + j * hd + 16 * c);
      for (int i = 0; i < R; ++i)
        oc[i][c] = _mm512_fmadd_ps(_mm512_set1_ps(pj[i][j]), vj, oc[i][c]);
    }
  }
  for (int i = 0; i < R; ++i) {
    for (int jj = j; jj < limit[rows[i]]; ++jj) {
      const __m512 b = _mm512_set1_ps(pj[i][jj]);
      for (int c = 0; c < HDV; ++c)
        oc[i][c] = _mm512_fmadd_ps(b, _mm512_loadu_ps(v + jj * hd + 16 * c), oc[i][c]);
    }
    float* orow = o + rows[i] * hd;
    for (int c = 0; c < HDV; ++c) _mm512_storeu_ps(orow + 16 * c, oc[i][c]);
  }
}

// Rows active in the tile (limit > 0), in groups of up to 4 (at head_dim 64, RowsTile512
// keeps 8 score and 16 output accumulators in the 32 registers; 2 rows at head_dim 128).
template <int HDV>
void ActiveRowsTile512(const float* q, const Tile& tile, const int* active, int n_active,
                       const int* limit, float* m, float* l, float* o) {
  constexpr int kGroup = HDV <= 4 ? 4 : 2;
  int i = 0;
  for (; i + kGroup <= n_active; i += kGroup) {
    RowsTile512<HDV, kGroup>(q, tile, active + i, limit, m, l, o);
  }
  for (; i + 2 <= n_active; i += 2) RowsTile512<HDV, 2>(q, tile, active + i, limit, m, l, o);
  for (; i < n_active; ++i) RowsTile512<HDV, 1>(q, tile, active + i, limit, m, l, o);
}
#endif

// Portable version of RowsTile512's per-row update for any head_dim.
inline void RowTileGeneric(const float* q, const Tile& tile, int hd, int limit, float& m, float& l,
                           float* o) {
  float s[kTile], p[kTile];
  float acc[kTile] = {0};
  for (int d = 0; d < hd; ++d) {
    const float* kd = tile.kt.data() + d * kTile;
    for (int j = 0; j < kTile; ++j) acc[j] += q[d] * kd[j];
  }
  float tmax = kNegInf;
  for (int j = 0; j < kTile; ++j) {
    s[j] = j < limit ? acc[j] : kNegInf;
    tmax = std::max(tmax, s[j]);
  }
  const float m_new = std::max(m, tmax);
  ExpTile(s, m_new, p);
  if (m_new != m) {
    const float alpha = m == kNegInf ? 0.f : std::exp(m - m_new);
    for (int d = 0; d < hd; ++d) o[d] *= alpha;
    l *= alpha;
    m = m_new;
  }
  for (int j = 0; j < limit; ++j) {
    l += p[j];
    const float* vj = tile.v.data() + static_cast<size_t>(j) * hd;
    for (int d = 0; d < hd; ++d) o[d] += p[j] * vj[d];
  }
}

// The active rows of a tile (`active` indexes q, limit, m, l and o, rows of head_dim).
void RowsTile(const float* q, const Tile& tile, int hd, const int* active, int n_active,
              const int* limit, float* m, float* l, float* o) {
#if defined(__AVX512F__)
  switch (hd) {
    case 64:
      return ActiveRowsTile512<4>(q, tile, active, n_active, limit, m, l, o);
    case 128:
      return ActiveRowsTile512<8>(q, tile, active, n_active, limit, m, l, o);
    case 32:
      return ActiveRowsTile512<2>(q, tile, active, n_active, limit, m, l, o);
    case 16:
      return ActiveRowsTile512<1>(q, tile, active, n_active, limit, m, l, o);
    default:
      break;
  }
#endif
  for (int i = 0; i < n_active; ++i) {
    const int r = active[i];
    RowTileGeneric(q + static_cast<size_t>(r) * hd, tile, hd, limit[r], m[r], l[r],
                   o + static_cast<size_t>(r) * hd);
  }
}

}  // namespace

void Attention(const float* q, int n_queries, const int32_t* q_pos, std::span<const KVSpan> spans,
               const AttentionShape& shape, float* out, AttentionObserver* observer) {
  const int hd = shape.head_dim;
  const int group = shape.num_heads / shape.num_kv_heads;
  const int q_stride = shape.num_heads * hd;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  int64_t total_keys = 0;
  for (const auto& s : spans) total_keys += s.n_tokens;
  // Enough query rows per work item to amortize loading a key tile, few enough to keep
  // the accumulators in cache.
  const int qblock = std::max(1, 96 / group);
  const int n_qblocks = (n_queries + qblock - 1) / qblock;
  const int64_t work = static_cast<int64_t>(n_qblocks) * shape.num_kv_heads;
  const int n_threads = omp_get_max_threads();
  std::vector<std::vector<float>> mass_per_thread(observer ? n_threads : 0);

  // Small problems (decode over a short context, tiny models) run on one thread: waking the
  // other costs more than the work.
  const int64_t flops = work * qblock * group * total_keys * hd;
  const bool parallel = flops >= (int64_t{1} << 20) && work > 1;
#pragma omp parallel if (parallel)
  {
    const int tid = omp_get_thread_num();
    const int max_rows = qblock * group;
    std::vector<float> qs(static_cast<size_t>(max_rows) * hd);
    std::vector<float> o(static_cast<size_t>(max_rows) * hd);
    std::vector<float> m(max_rows), l(max_rows);
    std::vector<int64_t> row_pos(max_rows);
    std::vector<int> limits(max_rows), active(max_rows);
    std::vector<float> row(hd);
    Tile tile{std::vector<float>(static_cast<size_t>(hd) * kTile),
              std::vector<float>(static_cast<size_t>(kTile) * hd), 0};
    float* mass = nullptr;
    if (observer) {
      mass_per_thread[tid].assign(total_keys, 0.f);
      mass = mass_per_thread[tid].data();
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t w = 0; w < work; ++w) {
      const int g = static_cast<int>(w % shape.num_kv_heads);
      const int i0 = static_cast<int>(w / shape.num_kv_heads) * qblock;
      const int nq = std::min(qblock, n_queries - i0);
      const int rows = nq * group;
      int64_t max_pos = 0;
      for (int r = 0; r < rows; ++r) {
        const int i = i0 + r / group;
        const int h = g * group + r % group;
        const float* src = q + static_cast<size_t>(i) * q_stride + static_cast<size_t>(h) * hd;
        for (int d = 0; d < hd; ++d) qs[static_cast<size_t>(r) * hd + d] = src[d] * scale;
        row_pos[r] = q_pos[i];
        max_pos = std::max<int64_t>(max_pos, q_pos[i]);
      }
      std::fill_n(o.begin(), static_cast<size_t>(rows) * hd, 0.f);
      std::fill_n(m.begin(), rows, kNegInf);
      std::fill_n(l.begin(), rows, 0.f);

      // Online softmax over key tiles (flash-attention style).
      for (KeyCursor cur(spans); !cur.done() && cur.pos() <= max_pos;) {
        LoadTile(cur, max_pos, g, shape, tile, row);
        int n_active = 0;
        for (int r = 0; r < rows; ++r) {
          limits[r] = VisibleInTile(tile, row_pos[r]);
          if (limits[r] > 0) active[n_active++] = r;
        }
        RowsTile(qs.data(), tile, hd, active.data(), n_active, limits.data(), m.data(), l.data(),
                 o.data());
      }
      for (int r = 0; r < rows; ++r) {
        const int i = i0 + r / group;
        const int h = g * group + r % group;
        float* dst = out + static_cast<size_t>(i) * q_stride + static_cast<size_t>(h) * hd;
        const float inv = l[r] > 0 ? 1.0f / l[r] : 0.f;
        for (int d = 0; d < hd; ++d) dst[d] = o[static_cast<size_t>(r) * hd + d] * inv;
      }
      if (mass != nullptr) {
        // Exact probabilities need the final max and sum: a second pass over the scores.
        // Keys are numbered in span order, the same order the cursor visits them.
        int64_t key_index = 0;
        float sc[kTile], p[kTile];
        for (KeyCursor cur(spans); !cur.done() && cur.pos() <= max_pos; key_index += tile.n) {
          LoadTile(cur, max_pos, g, shape, tile, row);
          for (int r = 0; r < rows; ++r) {
            const int limit = VisibleInTile(tile, row_pos[r]);
            if (limit == 0 || l[r] == 0.f) continue;
            TileScores(qs.data() + static_cast<size_t>(r) * hd, tile, hd, limit, sc);
            ExpTile(sc, m[r], p);
            const float inv = 1.0f / l[r];
            for (int j = 0; j < limit; ++j) mass[key_index + j] += p[j] * inv;
          }
        }
      }
    }
  }
  if (observer) {
    for (const auto& mt : mass_per_thread) {
      if (mt.empty()) continue;
      for (int64_t t = 0; t < total_keys; ++t) observer->key_mass[t] += mt[t];
    }
  }
}

}  // namespace ckv

namespace ckv {

namespace {

// key_mass: [total_keys], or [num_heads][total_keys] when per_head.
void MassImpl(const float* q, int n_queries, const int32_t* q_pos, std::span<const KVSpan> spans,
              const AttentionShape& shape, bool per_head, float* key_mass) {
  const int hd = shape.head_dim;
  const int group = shape.num_heads / shape.num_kv_heads;
  const int q_stride = shape.num_heads * hd;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  int64_t total_keys = 0;
  for (const auto& s : spans) total_keys += s.n_tokens;
  const int n_threads = omp_get_max_threads();
  const int64_t n_rows = static_cast<int64_t>(n_queries) * group;
  int rows_per_item = std::max(1, 96 / group) * group;
  // A problem with few KV heads and a short suffix (one probe head of IMPRESS, a decode step)
  // would be a single work item on one core: cut its rows finer so every thread has work.
  // Each item re-reads the keys, so not below kMinRows rows.
  constexpr int kMinRows = 8;
  const int64_t items_wanted = (2 * n_threads + shape.num_kv_heads - 1) / shape.num_kv_heads;
  if ((n_rows + rows_per_item - 1) / rows_per_item < items_wanted) {
    rows_per_item =
        static_cast<int>(std::max<int64_t>(kMinRows, (n_rows + items_wanted - 1) / items_wanted));
  }
  const int64_t items_per_head = (n_rows + rows_per_item - 1) / rows_per_item;
  const int64_t work = items_per_head * shape.num_kv_heads;
  const bool parallel = work > 1 && n_rows * total_keys * hd >= (int64_t{1} << 20);
  const int64_t out_size = per_head ? total_keys * shape.num_heads : total_keys;
  std::vector<std::vector<float>> mass_per_thread(n_threads);
#pragma omp parallel if (parallel)
  {
    const int tid = omp_get_thread_num();
    mass_per_thread[tid].assign(out_size, 0.f);
    float* mass = mass_per_thread[tid].data();
    std::vector<float> qs(static_cast<size_t>(rows_per_item) * hd), m(rows_per_item),
        l(rows_per_item);
    std::vector<int64_t> row_pos(rows_per_item), row_head(rows_per_item);
    std::vector<float> row(hd);
    Tile tile{std::vector<float>(static_cast<size_t>(hd) * kTile), {}, {}, 0};
    float sc[kTile], p[kTile];
#pragma omp for schedule(dynamic, 1)
    for (int64_t w = 0; w < work; ++w) {
      const int g = static_cast<int>(w % shape.num_kv_heads);
      const int64_t r0 = (w / shape.num_kv_heads) * rows_per_item;
      const int rows = static_cast<int>(std::min<int64_t>(rows_per_item, n_rows - r0));
      int64_t max_pos = 0;
      for (int r = 0; r < rows; ++r) {
        const int64_t i = (r0 + r) / group;
        const int h = g * group + static_cast<int>((r0 + r) % group);
        const float* src = q + static_cast<size_t>(i) * q_stride + static_cast<size_t>(h) * hd;
        for (int d = 0; d < hd; ++d) qs[static_cast<size_t>(r) * hd + d] = src[d] * scale;
        row_pos[r] = q_pos[i];
        row_head[r] = h;
        max_pos = std::max<int64_t>(max_pos, q_pos[i]);
        m[r] = kNegInf;
        l[r] = 0.f;
      }
      // Pass 1: running max and sum of exp per row.
      for (KeyCursor cur(spans); !cur.done() && cur.pos() <= max_pos;) {
        LoadTile(cur, max_pos, g, shape, tile, row, /*with_values=*/false);
        for (int r = 0; r < rows; ++r) {
          const int limit = VisibleInTile(tile, row_pos[r]);
          if (limit == 0) continue;
          TileScores(qs.data() + static_cast<size_t>(r) * hd, tile, hd, limit, sc);
          float tmax = kNegInf;
          for (int j = 0; j < limit; ++j) tmax = std::max(tmax, sc[j]);
          const float m_new = std::max(m[r], tmax);
          ExpTile(sc, m_new, p);
          float psum = 0.f;
          for (int j = 0; j < limit; ++j) psum += p[j];
          l[r] = (m[r] == kNegInf ? 0.f : l[r] * std::exp(m[r] - m_new)) + psum;
          m[r] = m_new;
        }
      }
      // Pass 2: probabilities with the final max and sum.
      int64_t key_index = 0;
      for (KeyCursor cur(spans); !cur.done() && cur.pos() <= max_pos; key_index += tile.n) {
        LoadTile(cur, max_pos, g, shape, tile, row, /*with_values=*/false);
        for (int r = 0; r < rows; ++r) {
          const int limit = VisibleInTile(tile, row_pos[r]);
          if (limit == 0 || l[r] == 0.f) continue;
          TileScores(qs.data() + static_cast<size_t>(r) * hd, tile, hd, limit, sc);
          ExpTile(sc, m[r], p);
          const float inv = 1.0f / l[r];
          float* row_mass = per_head ? mass + row_head[r] * total_keys : mass;
          for (int j = 0; j < limit; ++j) row_mass[key_index + j] += p[j] * inv;
        }
      }
    }
  }
  for (const auto& mt : mass_per_thread) {
    if (mt.empty()) continue;
    for (int64_t t = 0; t < out_size; ++t) key_mass[t] += mt[t];
  }
}

}  // namespace

void AttentionMass(const float* q, int n_queries, const int32_t* q_pos,
                   std::span<const KVSpan> spans, const AttentionShape& shape, float* key_mass) {
  MassImpl(q, n_queries, q_pos, spans, shape, /*per_head=*/false, key_mass);
}

void AttentionMassPerHead(const float* q, int n_queries, const int32_t* q_pos,
                          std::span<const KVSpan> spans, const AttentionShape& shape,
                          float* head_key_mass) {
  MassImpl(q, n_queries, q_pos, spans, shape, /*per_head=*/true, head_key_mass);
}

}  // namespace ckv
