// Kernels against straightforward reference loops.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kernels/attention.h"
#include "kernels/convert.h"
#include "kernels/linear.h"
#include "kernels/ops.h"

namespace ckv {
namespace {

std::vector<float> Random(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

// Stores f32 values as `dt` and returns the rounded values back as f32 (the reference input).
std::vector<float> Quantize(const std::vector<float>& v, DType dt,
                            std::vector<unsigned char>& store) {
  store.resize(v.size() * DTypeSize(dt));
  std::vector<float> back(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    if (dt == DType::kF32) {
      reinterpret_cast<float*>(store.data())[i] = v[i];
    } else {
      const uint16_t h = dt == DType::kBF16 ? F32ToBf16(v[i]) : F32ToF16(v[i]);
      reinterpret_cast<uint16_t*>(store.data())[i] = h;
    }
  }
  ToF32Row(store.data(), dt, back.data(), v.size());
  return back;
}

class LinearTest : public ::testing::TestWithParam<std::tuple<DType, int, bool>> {};

TEST_P(LinearTest, MatchesReference) {
  const auto [dt, m, pack] = GetParam();
  const int k = 72, n = 301;  // not multiples of the SIMD width, nor of two
  std::vector<unsigned char> wstore;
  const auto w = Quantize(Random(static_cast<size_t>(n) * k, 1, 0.1f), dt, wstore);
  const auto x = Random(static_cast<size_t>(m) * k, 2);
  auto lin = Linear::Create(wstore.data(), dt, n, k, LinearOptions{pack});
  ASSERT_TRUE(lin.ok()) << lin.status().ToString();
  std::vector<float> y(static_cast<size_t>(m) * n);
  (*lin)->Forward(x.data(), m, y.data());
  // bf16 weights on the batched path, and on the GEMV path where the CPU has AVX512-BF16,
  // round x to bf16 (relative 2^-8 per product): then the reference rounds it too.
  const bool rounds_x =
      dt == DType::kBF16 && (m > Linear::kGemvMaxRows || Linear::kGemvRoundsBf16Input);
  double max_err = 0;
  for (int r = 0; r < m; ++r) {
    for (int c = 0; c < n; ++c) {
      double ref = 0;
      for (int i = 0; i < k; ++i) {
        const float xi = rounds_x ? Bf16ToF32(F32ToBf16(x[r * k + i])) : x[r * k + i];
        ref += static_cast<double>(xi) * w[c * k + i];
      }
      max_err = std::max(max_err, std::abs(ref - y[r * n + c]));
    }
  }
  EXPECT_LE(max_err, 1e-4) << "m=" << m;
}

INSTANTIATE_TEST_SUITE_P(All, LinearTest,
                         ::testing::Combine(::testing::Values(DType::kF32, DType::kBF16,
                                                              DType::kF16),
                                            ::testing::Values(1, 3, 8, 17), ::testing::Bool()));

// A decode batch (1..kGemvMaxRows rows) must give every row the bits it gets alone: the
// server's answers may not depend on who else is decoding. k past the SIMD width reaches the
// scalar tail; the wide k (an MLP down projection's) makes batches walk their input in
// L1-sized blocks while one row alone does not.
TEST(Linear, EveryRowOfAGemvBatchHasTheBitsItHasAlone) {
  const int n = 257;
  for (int k : {96 + 40, 4864 + 40})
    for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
      std::vector<unsigned char> wstore;
      Quantize(Random(static_cast<size_t>(n) * k, 3, 0.1f), dt, wstore);
      auto lin = Linear::Create(wstore.data(), dt, n, k, LinearOptions{false});
      ASSERT_TRUE(lin.ok()) << lin.status().ToString();
      const auto x = Random(static_cast<size_t>(Linear::kGemvMaxRows) * k, 4);
      std::vector<float> alone(static_cast<size_t>(Linear::kGemvMaxRows) * n);
      for (int r = 0; r < Linear::kGemvMaxRows; ++r) {
        (*lin)->Forward(x.data() + static_cast<size_t>(r) * k, 1,
                        alone.data() + static_cast<size_t>(r) * n);
      }
      for (int m = 2; m <= Linear::kGemvMaxRows; ++m) {
        std::vector<float> y(static_cast<size_t>(m) * n);
        (*lin)->Forward(x.data(), m, y.data());
        for (size_t i = 0; i < y.size(); ++i) {
          ASSERT_EQ(y[i], alone[i]) << "k=" << k << " dtype " << DTypeSize(dt) << " m=" << m
                                    << " row " << i / n << " col " << i % n;
        }
      }
    }
}

struct RefAttention {
  std::vector<float> out;
  std::vector<double> mass;
};

RefAttention Naive(const std::vector<float>& q, int nq, const std::vector<int32_t>& qpos,
                   const std::vector<std::vector<float>>& ks,
                   const std::vector<std::vector<float>>& vs, const std::vector<KVSpan>& spans,
                   const AttentionShape& sh) {
  const int hd = sh.head_dim, group = sh.num_heads / sh.num_kv_heads, kvd = sh.num_kv_heads * hd;
  RefAttention r;
  r.out.assign(static_cast<size_t>(nq) * sh.num_heads * hd, 0.f);
  int64_t total = 0;
  for (const auto& s : spans) total += s.n_tokens;
  r.mass.assign(total, 0.0);
  for (int i = 0; i < nq; ++i) {
    for (int h = 0; h < sh.num_heads; ++h) {
      const int g = h / group;
      std::vector<double> sc;
      std::vector<std::pair<size_t, int64_t>> where;  // (span, token)
      for (size_t s = 0; s < spans.size(); ++s) {
        for (int64_t t = 0; t < spans[s].n_tokens; ++t) {
          if (spans[s].pos_begin + t > qpos[i]) continue;
          double d = 0;
          for (int e = 0; e < hd; ++e)
            d += q[(i * sh.num_heads + h) * hd + e] * ks[s][t * kvd + g * hd + e];
          sc.push_back(d / std::sqrt(hd));
          where.emplace_back(s, t);
        }
      }
      double mx = -1e300, sum = 0;
      for (double v : sc) mx = std::max(mx, v);
      for (double& v : sc) sum += (v = std::exp(v - mx));
      int64_t base_of[16] = {0};
      for (size_t s = 1; s < spans.size(); ++s) base_of[s] = base_of[s - 1] + spans[s - 1].n_tokens;
      for (size_t j = 0; j < sc.size(); ++j) {
        const double p = sc[j] / sum;
        const auto [s, t] = where[j];
        r.mass[base_of[s] + t] += p;
        for (int e = 0; e < hd; ++e)
          r.out[(i * sh.num_heads + h) * hd + e] += p * vs[s][t * kvd + g * hd + e];
      }
    }
  }
  return r;
}

class AttentionTest : public ::testing::TestWithParam<std::tuple<DType, int>> {};

TEST_P(AttentionTest, MatchesNaiveOverSpansWithCausalMaskAndMass) {
  const auto [dt, hd] = GetParam();
  AttentionShape sh{8, 2, hd, dt};
  const int kvd = sh.num_kv_heads * hd;
  // Two "prefix chunks" with a gap in positions, then the new tokens' own span.
  const std::vector<std::pair<int64_t, int64_t>> layout = {{0, 16}, {48, 21}, {100, 37}};
  std::vector<std::vector<unsigned char>> kstore(3), vstore(3);
  std::vector<std::vector<float>> ks, vs;
  std::vector<KVSpan> spans;
  for (size_t s = 0; s < layout.size(); ++s) {
    ks.push_back(Quantize(Random(layout[s].second * kvd, 10 + s), dt, kstore[s]));
    vs.push_back(Quantize(Random(layout[s].second * kvd, 20 + s), dt, vstore[s]));
    spans.push_back({kstore[s].data(), vstore[s].data(), layout[s].second, layout[s].first});
  }
  const int nq = 37;
  std::vector<int32_t> qpos(nq);
  for (int i = 0; i < nq; ++i) qpos[i] = 100 + i;
  const auto q = Random(static_cast<size_t>(nq) * sh.num_heads * hd, 5);
  std::vector<float> out(q.size());
  int64_t total = 0;
  for (const auto& s : spans) total += s.n_tokens;
  std::vector<float> mass(total, 0.f);
  AttentionObserver obs{mass.data()};
  Attention(q.data(), nq, qpos.data(), spans, sh, out.data(), &obs);
  const RefAttention ref = Naive(q, nq, qpos, ks, vs, spans, sh);
  double max_err = 0, mass_err = 0, mass_sum = 0;
  for (size_t i = 0; i < out.size(); ++i)
    max_err = std::max<double>(max_err, std::abs(out[i] - ref.out[i]));
  for (int64_t t = 0; t < total; ++t) {
    mass_err = std::max(mass_err, std::abs(mass[t] - ref.mass[t]));
    mass_sum += mass[t];
  }
  EXPECT_LE(max_err, 1e-5);
  EXPECT_LE(mass_err, 1e-4);
  EXPECT_NEAR(mass_sum, nq * sh.num_heads, 1e-2);  // each query row's probabilities sum to 1
}

INSTANTIATE_TEST_SUITE_P(All, AttentionTest,
                         ::testing::Combine(::testing::Values(DType::kF32, DType::kBF16),
                                            ::testing::Values(8, 16, 64)),
                         [](const auto& info) {
                           return std::string(DTypeName(std::get<0>(info.param))) + "_hd" +
                                  std::to_string(std::get<1>(info.param));
                         });

TEST(Attention, SplittingTheContextIntoSpansIsBitExact) {
  AttentionShape sh{4, 2, 16, DType::kBF16};
  const int kvd = sh.num_kv_heads * sh.head_dim;
  const int64_t n_keys = 83;
  std::vector<unsigned char> ks, vs;
  Quantize(Random(n_keys * kvd, 30), DType::kBF16, ks);
  Quantize(Random(n_keys * kvd, 31), DType::kBF16, vs);
  const int nq = 5;
  std::vector<int32_t> qpos(nq);
  for (int i = 0; i < nq; ++i) qpos[i] = static_cast<int32_t>(n_keys - nq + i);
  const auto q = Random(static_cast<size_t>(nq) * sh.num_heads * sh.head_dim, 32);
  const KVSpan whole{ks.data(), vs.data(), n_keys, 0};
  std::vector<float> ref(q.size()), split_out(q.size());
  std::vector<float> mass_ref(n_keys, 0.f), mass_split(n_keys, 0.f);
  AttentionObserver obs_ref{mass_ref.data()}, obs_split{mass_split.data()};
  Attention(q.data(), nq, qpos.data(), {&whole, 1}, sh, ref.data(), &obs_ref);
  // Chunks of 16 with a partial last one, then the "suffix" as its own span.
  std::vector<KVSpan> spans;
  const size_t row = static_cast<size_t>(kvd) * 2;
  for (int64_t t = 0; t < n_keys - nq; t += 16) {
    const int64_t len = std::min<int64_t>(16, n_keys - nq - t);
    spans.push_back({ks.data() + t * row, vs.data() + t * row, len, t});
  }
  spans.push_back(
      {ks.data() + (n_keys - nq) * row, vs.data() + (n_keys - nq) * row, nq, n_keys - nq});
  Attention(q.data(), nq, qpos.data(), spans, sh, split_out.data(), &obs_split);
  EXPECT_EQ(ref, split_out);
  EXPECT_EQ(mass_ref, mass_split);
  // The values-free kernel reports the same probabilities.
  std::vector<float> mass_only(n_keys, 0.f);
  AttentionMass(q.data(), nq, qpos.data(), spans, sh, mass_only.data());
  for (int64_t t = 0; t < n_keys; ++t) EXPECT_NEAR(mass_only[t], mass_ref[t], 1e-5f) << t;
}

// bf16 keys and values are converted to float32 exactly, so attending to them must give the
// bits the same values stored as float32 give: this pins the bf16 tiles' vector transpose
// (head_dim 64 and 128) against the key-by-key path float32 takes, over spans that cut tiles,
// a position gap, a partial last tile, one query (decode) and many.
TEST(Attention, Bf16KeysGiveTheBitsOfTheSameValuesInF32) {
  for (int hd : {64, 128}) {
    for (int nq : {1, 19}) {
      AttentionShape bf{14, 2, hd, DType::kBF16};
      AttentionShape f32 = bf;
      f32.kv_dtype = DType::kF32;
      const int kvd = bf.num_kv_heads * hd;
      const std::vector<std::pair<int64_t, int64_t>> layout = {{0, 21}, {64, 40}, {120, 53}};
      std::vector<std::vector<unsigned char>> kb(3), vb(3), kf(3), vf(3);
      std::vector<KVSpan> spans_bf, spans_f32;
      int64_t total = 0;
      for (size_t s = 0; s < layout.size(); ++s) {
        const auto [begin, len] = layout[s];
        const auto k = Quantize(Random(len * kvd, 40 + s), DType::kBF16, kb[s]);
        const auto v = Quantize(Random(len * kvd, 50 + s), DType::kBF16, vb[s]);
        Quantize(k, DType::kF32, kf[s]);
        Quantize(v, DType::kF32, vf[s]);
        spans_bf.push_back({kb[s].data(), vb[s].data(), len, begin});
        spans_f32.push_back({kf[s].data(), vf[s].data(), len, begin});
        total += len;
      }
      std::vector<int32_t> qpos(nq);
      for (int i = 0; i < nq; ++i) qpos[i] = static_cast<int32_t>(172 - nq + 1 + i);
      const auto q = Random(static_cast<size_t>(nq) * bf.num_heads * hd, 60);
      std::vector<float> out_bf(q.size()), out_f32(q.size());
      std::vector<float> mass_bf(total, 0.f), mass_f32(total, 0.f);
      AttentionObserver obs_bf{mass_bf.data()}, obs_f32{mass_f32.data()};
      Attention(q.data(), nq, qpos.data(), spans_bf, bf, out_bf.data(), &obs_bf);
      Attention(q.data(), nq, qpos.data(), spans_f32, f32, out_f32.data(), &obs_f32);
      EXPECT_EQ(out_bf, out_f32) << "head_dim " << hd << ", " << nq << " queries";
      // Masses are per-thread sums added in whichever order the threads took work: equal up
      // to that order.
      std::vector<float> only_bf(total, 0.f), only_f32(total, 0.f);
      AttentionMass(q.data(), nq, qpos.data(), spans_bf, bf, only_bf.data());
      AttentionMass(q.data(), nq, qpos.data(), spans_f32, f32, only_f32.data());
      for (int64_t t = 0; t < total; ++t) {
        ASSERT_NEAR(mass_bf[t], mass_f32[t], 1e-5f) << t;
        ASSERT_NEAR(only_bf[t], only_f32[t], 1e-5f) << t;
      }
    }
  }
}

// One KV head and a short suffix (an IMPRESS probe head): the kernel cuts the rows finer so
// both cores work; the probabilities still match a double-precision reference per key.
TEST(Attention, MassOfOneHeadWithFewQueriesMatchesTheReference) {
  for (int group : {1, 3}) {
    AttentionShape sh{group, 1, 64, DType::kBF16};
    const int64_t n_keys = 3000;
    const int nq = 20;
    std::vector<unsigned char> ks;
    const auto kf = Quantize(Random(n_keys * sh.head_dim, 40, 2.f), DType::kBF16, ks);
    const auto q = Random(static_cast<size_t>(nq) * group * sh.head_dim, 41);
    std::vector<int32_t> qpos(nq);
    for (int i = 0; i < nq; ++i) qpos[i] = static_cast<int32_t>(n_keys - nq + i);
    const KVSpan whole{ks.data(), nullptr, n_keys, 0};
    std::vector<float> mass(n_keys, 0.f);
    AttentionMass(q.data(), nq, qpos.data(), {&whole, 1}, sh, mass.data());
    std::vector<double> ref(n_keys, 0.0);
    const double scale = 1.0 / std::sqrt(64.0);
    for (int i = 0; i < nq; ++i) {
      for (int h = 0; h < group; ++h) {
        const float* qi = q.data() + (static_cast<size_t>(i) * group + h) * 64;
        std::vector<double> sc(qpos[i] + 1);
        double mx = -1e300, sum = 0;
        for (int64_t t = 0; t <= qpos[i]; ++t) {
          double d = 0;
          for (int x = 0; x < 64; ++x) d += double(qi[x]) * kf[t * 64 + x];
          sc[t] = d * scale;
          mx = std::max(mx, sc[t]);
        }
        for (auto& v : sc) sum += (v = std::exp(v - mx));
        for (int64_t t = 0; t <= qpos[i]; ++t) ref[t] += sc[t] / sum;
      }
    }
    for (int64_t t = 0; t < n_keys; ++t) {
      ASSERT_NEAR(mass[t], ref[t], 1e-5 + 1e-4 * ref[t]) << "group " << group << " key " << t;
    }
  }
}

// Per query head: each head's row matches a double-precision reference of that head alone, and
// the rows add up to the summed kernel's mass.
TEST(Attention, MassPerHeadMatchesTheReferenceAndSumsToTheTotal) {
  AttentionShape sh{4, 2, 16, DType::kBF16};
  const int kvd = sh.num_kv_heads * sh.head_dim;
  const int64_t n_keys = 700;
  const int nq = 9;
  std::vector<unsigned char> ks;
  const auto kf = Quantize(Random(n_keys * kvd, 50, 1.5f), DType::kBF16, ks);
  const auto q = Random(static_cast<size_t>(nq) * sh.num_heads * sh.head_dim, 51);
  std::vector<int32_t> qpos(nq);
  for (int i = 0; i < nq; ++i) qpos[i] = static_cast<int32_t>(n_keys - nq + i);
  const KVSpan whole{ks.data(), nullptr, n_keys, 0};
  std::vector<float> per_head(static_cast<size_t>(sh.num_heads) * n_keys, 0.f), total(n_keys, 0.f);
  AttentionMassPerHead(q.data(), nq, qpos.data(), {&whole, 1}, sh, per_head.data());
  AttentionMass(q.data(), nq, qpos.data(), {&whole, 1}, sh, total.data());
  const int group = sh.num_heads / sh.num_kv_heads;
  for (int h = 0; h < sh.num_heads; ++h) {
    std::vector<double> ref(n_keys, 0.0);
    for (int i = 0; i < nq; ++i) {
      const float* qi = q.data() + (static_cast<size_t>(i) * sh.num_heads + h) * sh.head_dim;
      std::vector<double> sc(qpos[i] + 1);
      double mx = -1e300, sum = 0;
      for (int64_t t = 0; t <= qpos[i]; ++t) {
        double d = 0;
        for (int x = 0; x < sh.head_dim; ++x) {
          d += double(qi[x]) * kf[t * kvd + (h / group) * sh.head_dim + x];
        }
        sc[t] = d / std::sqrt(double(sh.head_dim));
        mx = std::max(mx, sc[t]);
      }
      for (auto& v : sc) sum += (v = std::exp(v - mx));
      for (int64_t t = 0; t <= qpos[i]; ++t) ref[t] += sc[t] / sum;
    }
    for (int64_t t = 0; t < n_keys; ++t) {
      ASSERT_NEAR(per_head[h * n_keys + t], ref[t], 1e-5 + 1e-4 * ref[t]) << "head " << h;
    }
  }
  for (int64_t t = 0; t < n_keys; ++t) {
    float sum = 0.f;
    for (int h = 0; h < sh.num_heads; ++h) sum += per_head[h * n_keys + t];
    EXPECT_NEAR(sum, total[t], 1e-5f) << t;
  }
}

TEST(Ops, SiluMulMatchesScalar) {
  const auto g = Random(1000, 3, 4.0f);
  const auto u = Random(1000, 4);
  std::vector<float> out(1000);
  SiluMul(g.data(), u.data(), out.data(), out.size());
  for (size_t i = 0; i < out.size(); ++i) {
    const double ref = g[i] / (1.0 + std::exp(-static_cast<double>(g[i]))) * u[i];
    EXPECT_NEAR(out[i], ref, 1e-5 * std::max(1.0, std::abs(ref)));
  }
}

TEST(Ops, RmsNormAndRope) {
  const int dim = 16;
  const auto x = Random(2 * dim, 6);
  std::vector<float> w(dim, 2.0f), y(2 * dim);
  RmsNorm(x.data(), w.data(), 1e-6f, 2, dim, y.data());
  for (int r = 0; r < 2; ++r) {
    double ss = 0;
    for (int i = 0; i < dim; ++i) ss += y[r * dim + i] * y[r * dim + i];
    EXPECT_NEAR(ss / dim, 4.0, 1e-3);  // rms 1, scaled by weight 2
  }
  // RoPE at position 0 is the identity; it preserves each pair's norm elsewhere.
  RopeTable rope(8, 10000.f);
  auto v = Random(16, 7);
  auto orig = v;
  const int32_t pos[2] = {0, 5};
  rope.Apply(v.data(), 2, 8, 1, pos);
  for (int i = 0; i < 8; ++i) EXPECT_FLOAT_EQ(v[i], orig[i]);
  for (int i = 0; i < 4; ++i) {
    const double a = std::hypot(orig[8 + i], orig[8 + i + 4]);
    const double b = std::hypot(v[8 + i], v[8 + i + 4]);
    EXPECT_NEAR(a, b, 1e-5);
  }
}

}  // namespace
}  // namespace ckv
