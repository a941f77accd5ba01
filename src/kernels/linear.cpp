#include "kernels/linear.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <dnnl.hpp>
#include <type_traits>
#include <vector>

#include "kernels/convert.h"
#include "kernels/intrinsics.h"

namespace ckv {
namespace {

using dnnl::memory;

memory::data_type ToDnnl(DType t) {
  switch (t) {
    case DType::kF32:
      return memory::data_type::f32;
    case DType::kBF16:
      return memory::data_type::bf16;
    case DType::kF16:
      return memory::data_type::f16;
  }
  return memory::data_type::f32;
}

// Below this many elements a loop is faster on one thread than the cost of waking (and
// synchronizing with) the second one.
constexpr int64_t kParallelGemvElements = int64_t{1} << 18;

// Rows of f16 weights converted to float32 per block in the batched path.
constexpr int64_t kF16BlockRows = 256;

}  // namespace

class MatmulCache {
 public:
  struct Prim {
    dnnl::matmul matmul;
    memory::desc src_desc;
    memory::desc dst_desc;
  };

  const dnnl::engine& engine() const { return engine_; }

  // Primitive for x[m, k] (src_type) times a weight [k, n] laid out as `wdesc`, writing an
  // [m, n] float32 output with row stride ldc.
  std::shared_ptr<Prim> Get(int m, int64_t n, int64_t k, memory::data_type src_type,
                            const memory::desc& wdesc, int64_t ldc) {
    std::lock_guard<std::mutex> lock(mu_);
    const auto key = std::make_tuple(m, n, k, static_cast<int>(src_type), ldc);
    for (const auto& [wd, prim] : prims_[key]) {
      if (wd == wdesc) return prim;
    }
    auto p = std::make_shared<Prim>();
    p->src_desc = memory::desc({m, k}, src_type, memory::format_tag::ab);
    p->dst_desc = memory::desc({m, n}, memory::data_type::f32, memory::dims{ldc, 1});
    auto pd =
        dnnl::matmul::primitive_desc(dnnl::matmul::desc(p->src_desc, wdesc, p->dst_desc), engine_);
    p->matmul = dnnl::matmul(pd);
    prims_[key].emplace_back(wdesc, p);
    return p;
  }

 private:
  dnnl::engine engine_{dnnl::engine::kind::cpu, 0};
  std::mutex mu_;
  std::map<std::tuple<int, int64_t, int64_t, int, int64_t>,
           std::vector<std::pair<memory::desc, std::shared_ptr<Prim>>>>
      prims_;
};

std::shared_ptr<MatmulCache> NewMatmulCache() {
  return std::make_shared<MatmulCache>();
}

struct Linear::Impl {
  std::shared_ptr<MatmulCache> cache;
  const dnnl::engine& engine() const { return cache->engine(); }
  // Weight as oneDNN sees it (for F16: unused; blocks are converted on the fly).
  memory::desc weight_desc;
  memory weight_mem;
  std::vector<uint16_t> packed_storage16;
  std::vector<float> packed_storage32;

  std::shared_ptr<MatmulCache::Prim> Get(int m, int64_t n, int64_t k, memory::data_type src_type,
                                         const memory::desc& wdesc, int64_t ldc) const {
    return cache->Get(m, n, k, src_type, wdesc, ldc);
  }
};

Linear::Linear(std::unique_ptr<Impl> impl, const void* data, DType dtype, int64_t out, int64_t in)
    : impl_(std::move(impl)), data_(data), dtype_(dtype), out_(out), in_(in) {}

Linear::~Linear() = default;

Result<std::unique_ptr<Linear>> Linear::Create(const void* data, DType dtype, int64_t out_features,
                                               int64_t in_features, const LinearOptions& opts) {
  if (out_features <= 0 || in_features <= 0) {
    return Status::InvalidArgument("linear layer with non-positive shape");
  }
  auto impl = std::make_unique<Impl>();
  impl->cache = opts.primitives ? opts.primitives : NewMatmulCache();
  const void* used = data;
  try {
    if (dtype != DType::kF16) {
      // W is [out, in] row-major = a [in, out] matrix in column-major ("ba") order.
      memory::desc plain({in_features, out_features}, ToDnnl(dtype), memory::format_tag::ba);
      if (opts.pack_weights) {
        memory::desc any({in_features, out_features}, ToDnnl(dtype), memory::format_tag::any);
        memory::desc src({64, in_features}, ToDnnl(dtype), memory::format_tag::ab);
        memory::desc dst({64, out_features}, memory::data_type::f32, memory::format_tag::ab);
        auto pd = dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, any, dst), impl->engine());
        impl->weight_desc = pd.weights_desc();
        const size_t bytes = impl->weight_desc.get_size();
        void* buf;
        if (dtype == DType::kF32) {
          impl->packed_storage32.resize(bytes / sizeof(float) + 1);
          buf = impl->packed_storage32.data();
        } else {
          impl->packed_storage16.resize(bytes / sizeof(uint16_t) + 1);
          buf = impl->packed_storage16.data();
        }
        impl->weight_mem = memory(impl->weight_desc, impl->engine(), buf);
        memory plain_mem(plain, impl->engine(), const_cast<void*>(data));
        dnnl::stream s(impl->engine());
        dnnl::reorder(plain_mem, impl->weight_mem).execute(s, plain_mem, impl->weight_mem);
        s.wait();
      } else {
        impl->weight_desc = plain;
        impl->weight_mem = memory(plain, impl->engine(), const_cast<void*>(data));
      }
    }
  } catch (const dnnl::error& e) {
    return Status::Internal(std::string("oneDNN could not set up a matmul: ") + e.what());
  }
  return std::unique_ptr<Linear>(
      new Linear(std::move(impl), used, dtype, out_features, in_features));
}

void Linear::Forward(const float* x, int m, float* y, const uint16_t* x_bf16) const {
  if (m <= kGemvMaxRows) {
    ForwardGemv(x, m, y, x_bf16);
    return;
  }
  dnnl::stream stream(impl_->engine());
  const int64_t k = in_;
  if (dtype_ == DType::kF16) {
    // No f16 matmul on CPUs without AVX512-FP16: convert a block of rows to f32 and run
    // the f32 matmul on it; the conversion is 1/m of the multiply work.
    std::vector<float> wblock(static_cast<size_t>(kF16BlockRows) * k);
    memory::desc src({m, k}, memory::data_type::f32, memory::format_tag::ab);
    memory src_mem(src, impl_->engine(), const_cast<float*>(x));
    for (int64_t n0 = 0; n0 < out_; n0 += kF16BlockRows) {
      const int64_t nb = std::min(kF16BlockRows, out_ - n0);
      const uint16_t* w = static_cast<const uint16_t*>(data_) + n0 * k;
#pragma omp parallel for schedule(static)
      for (int64_t r = 0; r < nb; ++r) F16ToF32Row(w + r * k, wblock.data() + r * k, k);
      memory::desc wdesc({k, nb}, memory::data_type::f32, memory::format_tag::ba);
      auto prim = impl_->Get(m, nb, k, memory::data_type::f32, wdesc, out_);
      memory wmem(wdesc, impl_->engine(), wblock.data());
      memory dst_mem(prim->dst_desc, impl_->engine(), y + n0);
      prim->matmul.execute(
          stream, {{DNNL_ARG_SRC, src_mem}, {DNNL_ARG_WEIGHTS, wmem}, {DNNL_ARG_DST, dst_mem}});
    }
    stream.wait();
    return;
  }
  const auto src_type = ToDnnl(dtype_);
  std::vector<uint16_t> xb;
  const void* src_ptr = x;
  if (dtype_ == DType::kBF16 && x_bf16 != nullptr) {
    src_ptr = x_bf16;
  } else if (dtype_ == DType::kBF16) {
    xb.resize(static_cast<size_t>(m) * k);
#pragma omp parallel for schedule(static) if (m * k >= kParallelGemvElements)
    for (int r = 0; r < m; ++r) F32ToBf16Row(x + r * k, xb.data() + r * k, k);
    src_ptr = xb.data();
  }
  auto prim = impl_->Get(m, out_, k, src_type, impl_->weight_desc, out_);
  memory src_mem(prim->src_desc, impl_->engine(), const_cast<void*>(src_ptr));
  memory dst_mem(prim->dst_desc, impl_->engine(), y);
  prim->matmul.execute(
      stream,
      {{DNNL_ARG_SRC, src_mem}, {DNNL_ARG_WEIGHTS, impl_->weight_mem}, {DNNL_ARG_DST, dst_mem}});
  stream.wait();
}

namespace {

#if defined(__AVX512F__)
// The sums of the 16 lanes of each of M accumulators, each in _mm512_reduce_add_ps's order
// (halves: h[i] = t[i + 8] + t[i]; quarters: q[i] = h[i + 4] + h[i]; then (q0 + q2) +
// (q1 + q3)), so a row's sum has the same bits whatever M is. Rows share the shuffles: two
// rows per vector for the halves, four for the quarters and pairs. One row at a time, through
// memory, the sums took 8 x 32 instructions per output at 8 rows, half as many as the
// 28-step dot-product loop over a 896-wide row they end (most of the 0.5B shape's weights).
template <int M>
inline void SumLanesOfRows(const __m512 (&acc)[M], float (&out)[M]) {
  constexpr int kPairs = (M + 1) / 2;
  __m512 halves[kPairs];  // pair p: lanes 0-7 row 2p's h, lanes 8-15 row 2p + 1's
  for (int p = 0; p < kPairs; ++p) {
    const __m512 a = acc[2 * p];
    const __m512 b = acc[2 * p + 1 < M ? 2 * p + 1 : 2 * p];
    const __m512 lo = _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(1, 0, 1, 0));
    const __m512 hi = _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 2, 3, 2));
    halves[p] = _mm512_add_ps(hi, lo);
  }
  for (int g = 0; g < (kPairs + 1) / 2; ++g) {
    const __m512 ab = halves[2 * g];
    const __m512 cd = halves[2 * g + 1 < kPairs ? 2 * g + 1 : 2 * g];
    // 128-bit lane j: row 4g + j's q0..q3.
    const __m512 lo = _mm512_shuffle_f32x4(ab, cd, _MM_SHUFFLE(2, 0, 2, 0));
    const __m512 hi = _mm512_shuffle_f32x4(ab, cd, _MM_SHUFFLE(3, 1, 3, 1));
    const __m512 q = _mm512_add_ps(hi, lo);
    // Element 0 of each 128-bit lane: (q0 + q2) + (q1 + q3).
    const __m512 s = _mm512_add_ps(q, _mm512_permute_ps(q, _MM_SHUFFLE(1, 0, 3, 2)));
    const __m512 f = _mm512_add_ps(s, _mm512_permute_ps(s, _MM_SHUFFLE(2, 3, 0, 1)));
    alignas(64) float t[16];
    _mm512_store_ps(t, f);
    for (int j = 0; j < 4 && 4 * g + j < M; ++j) out[4 * g + j] = t[4 * j];
  }
}
#endif

// Dot products of one weight row (stored type T) with M float32 input rows. M is a template
// parameter so the accumulators live in registers (a runtime row count left them in memory,
// costing a store-forwarding round trip per FMA). Each row keeps one accumulator and the same
// order whatever M is: a row computes the same bits alone or in a decode batch.
template <DType T, int M>
inline void DotRow(const void* wrow_v, const float* x, int64_t k, float* out) {
  float acc_s[M] = {0};
  int64_t i = 0;
#if defined(__AVX512F__)
  __m512 acc[M];
  for (int r = 0; r < M; ++r) acc[r] = _mm512_setzero_ps();
  for (; i + 16 <= k; i += 16) {
    __m512 w;
    if constexpr (T == DType::kF32) {
      w = _mm512_loadu_ps(static_cast<const float*>(wrow_v) + i);
    } else {
      __m256i h = _mm256_loadu_si256(
          reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(wrow_v) + i));
      if constexpr (T == DType::kBF16) {
        w = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
      } else {
        w = _mm512_cvtph_ps(h);
      }
    }
    for (int r = 0; r < M; ++r) acc[r] = _mm512_fmadd_ps(w, _mm512_loadu_ps(x + r * k + i), acc[r]);
  }
  SumLanesOfRows<M>(acc, acc_s);
#endif
  for (; i < k; ++i) {
    float w;
    if constexpr (T == DType::kF32) {
      w = static_cast<const float*>(wrow_v)[i];
    } else if constexpr (T == DType::kBF16) {
      w = Bf16ToF32(static_cast<const uint16_t*>(wrow_v)[i]);
    } else {
      w = F16ToF32(static_cast<const uint16_t*>(wrow_v)[i]);
    }
    // std::fma, not a * b + c: the compiler may contract the latter in one row count's
    // instantiation and not in another's (seen under the sanitizer build), and a row's bits
    // must not depend on the batch.
    for (int r = 0; r < M; ++r) acc_s[r] = std::fma(w, x[r * k + i], acc_s[r]);
  }
  for (int r = 0; r < M; ++r) out[r] = acc_s[r];
}

template <DType T, int M>
void GemvM(const void* w, int64_t out_features, int64_t k, const float* x, float* y) {
  const size_t row_bytes = static_cast<size_t>(k) * DTypeSize(T);
#pragma omp parallel for schedule(static) if (out_features * k >= kParallelGemvElements)
  for (int64_t n = 0; n < out_features; ++n) {
    float res[M];
    DotRow<T, M>(static_cast<const char*>(w) + n * row_bytes, x, k, res);
    for (int r = 0; r < M; ++r) y[r * out_features + n] = res[r];
  }
}

// Calls f(std::integral_constant<int, M>{}) for the row count m (1..kGemvMaxRows): the GEMV
// kernels take M as a template parameter so their accumulators stay in registers.
template <typename F>
void WithRowCount(int m, F&& f) {
  static_assert(Linear::kGemvMaxRows == 8);
  switch (m) {
    case 1:
      return f(std::integral_constant<int, 1>{});
    case 2:
      return f(std::integral_constant<int, 2>{});
    case 3:
      return f(std::integral_constant<int, 3>{});
    case 4:
      return f(std::integral_constant<int, 4>{});
    case 5:
      return f(std::integral_constant<int, 5>{});
    case 6:
      return f(std::integral_constant<int, 6>{});
    case 7:
      return f(std::integral_constant<int, 7>{});
    default:
      return f(std::integral_constant<int, 8>{});
  }
}

template <DType T>
void GemvT(const void* w, int64_t out_features, int64_t k, const float* x, int m, float* y) {
  WithRowCount(m, [&](auto rows) { GemvM<T, decltype(rows)::value>(w, out_features, k, x, y); });
}

#if defined(__AVX512BF16__)
// How far ahead of its loads a GEMV thread asks for its weights (each thread reads one
// contiguous run of rows, so this reaches into the rows after the current one). Without it
// the loads wait on memory: at 8 input rows, perf put half of GemvBf16Dot<8>'s samples on
// the weight load and the step read its weights at ~18 GB/s of the 50-60 available, since
// the out-of-order window covers only ~16 iterations (1 KB) of the dot-product loop. Measured
// on the 0.5B shape, 4 alternating rounds (bench model --batch 8): no prefetch 39-41 tok/s
// one stream and 141-163 at 8 rows; 4 KiB ahead 43-44 and 177-180; 2, 3, 6 and 8 KiB within
// noise of 4 KiB. A prefetch never faults, so reaching past the end of the matrix is harmless.
// Into L2 (T1), not L1 (T0): a T0 prefetch holds one of the few L1 miss buffers until its line
// arrives, the same buffers the 8 input loads of each step refill from L2 with. 4 alternating
// rounds, 2026-12-02 (bench model --batch 4 8): T0 86-89 / 123-141 tok/s, T1 103-114 / 158-181,
// one stream unchanged (28-36 both); T1 2 KiB and 8 KiB ahead within noise of 4.
constexpr int64_t kWeightPrefetchBytes = 4096;
constexpr auto kWeightPrefetchHint = _MM_HINT_T1;

// The dot-product loop over [i0, i1) of one weight row: acc[r] += w[i0, i1) . x_r[i0, i1).
template <int M>
inline void DotBf16Span(const uint16_t* wr, int64_t i0, int64_t i1, int64_t k, const uint16_t* xb,
                        __m512 (&acc)[M]) {
  for (int64_t i = i0; i < i1; i += 32) {
    // In integers: a pointer past the matrix's end would be undefined even unused.
    _mm_prefetch(
        reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(wr + i) + kWeightPrefetchBytes),
        kWeightPrefetchHint);
    const __m512bh wv = (__m512bh)_mm512_loadu_si512(wr + i);
    for (int r = 0; r < M; ++r) {
      acc[r] = _mm512_dpbf16_ps(acc[r], wv, (__m512bh)_mm512_loadu_si512(xb + r * k + i));
    }
  }
}

// The lane sums and scalar tail that end one output: y[r][n] for every row r.
template <int M>
inline void FinishBf16Output(const uint16_t* wr, int64_t k_main, int64_t k, const uint16_t* xb,
                             const __m512 (&acc)[M], int64_t n, int64_t out_features, float* y) {
  float sums[M];
  SumLanesOfRows<M>(acc, sums);
  for (int r = 0; r < M; ++r) {
    float s = sums[r];
    for (int64_t i = k_main; i < k; ++i) {
      s = std::fma(Bf16ToF32(wr[i]), Bf16ToF32(xb[r * k + i]), s);  // as in DotRow's tail
    }
    y[r * out_features + n] = s;
  }
}

// Input bytes a GEMV step keeps in L1 while it walks the weights (of its 32 KiB; the rest
// holds the weights in flight and the saved accumulators).
constexpr int64_t kGemvInputBlockBytes = 16384;
// Outputs whose accumulators are saved between input blocks (M x 64 bytes each).
constexpr int64_t kGemvBlockedOutputs = 16;

// bf16 weights times M bf16-rounded input rows with AVX512-BF16 dot products (vdpbf16ps: 32
// weights per instruction and row, against 16 per float FMA after two conversions). One
// stream is bound by memory either way; a decode batch of 2-8 rows is bound by multiply-adds
// on the float path, and this halves them (bench model --batch 8: 153-198 against 97-98
// tok/s). Rounding the input to bf16 is what the batched (oneDNN) path does too. Every row has
// one accumulator and the same order whatever M is: a row computes the same bits alone or in
// a batch.
//
// Where the M input rows do not fit in L1 (the MLP's down projection: 8 rows x 4,864 inputs
// = 78 KB), each output re-read them from L2 and ran at ~60% of the rate of the 896-wide
// matrices. There the input is walked in blocks that fit, over kGemvBlockedOutputs outputs at
// a time, their accumulators saved between blocks: every output still sees the same
// dot-product steps in the same order, so the bits do not change.
template <int M>
void GemvBf16Dot(const uint16_t* w, int64_t out_features, int64_t k, const uint16_t* xb, float* y) {
  const int64_t k_main = k / 32 * 32;
  const int64_t k_block =
      std::max<int64_t>(32, kGemvInputBlockBytes / (M * int64_t{sizeof(uint16_t)}) / 32 * 32);
  // One row is bound by memory, not by re-reading its input: it keeps one stream per weight
  // row (the 1.5B and 7B shapes' down projections exceed the block even alone).
  if (M == 1 || k_main <= k_block) {
#pragma omp parallel for schedule(static) if (out_features * k >= kParallelGemvElements)
    for (int64_t n = 0; n < out_features; ++n) {
      const uint16_t* wr = w + n * k;
      __m512 acc[M];
      for (int r = 0; r < M; ++r) acc[r] = _mm512_setzero_ps();
      DotBf16Span<M>(wr, 0, k_main, k, xb, acc);
      FinishBf16Output<M>(wr, k_main, k, xb, acc, n, out_features, y);
    }
    return;
  }
  const int64_t groups = (out_features + kGemvBlockedOutputs - 1) / kGemvBlockedOutputs;
#pragma omp parallel for schedule(static) if (out_features * k >= kParallelGemvElements)
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t n0 = g * kGemvBlockedOutputs;
    const int64_t n1 = std::min(out_features, n0 + kGemvBlockedOutputs);
    __m512 saved[kGemvBlockedOutputs][M];
    for (int64_t n = n0; n < n1; ++n) {
      for (int r = 0; r < M; ++r) saved[n - n0][r] = _mm512_setzero_ps();
    }
    // The weight prefetch now reaches into this row's next blocks, which stay in L2 until
    // their turn.
    for (int64_t i0 = 0; i0 < k_main; i0 += k_block) {
      const int64_t i1 = std::min(k_main, i0 + k_block);
      for (int64_t n = n0; n < n1; ++n) {
        __m512 acc[M];
        for (int r = 0; r < M; ++r) acc[r] = saved[n - n0][r];
        DotBf16Span<M>(w + n * k, i0, i1, k, xb, acc);
        for (int r = 0; r < M; ++r) saved[n - n0][r] = acc[r];
      }
    }
    for (int64_t n = n0; n < n1; ++n) {
      FinishBf16Output<M>(w + n * k, k_main, k, xb, saved[n - n0], n, out_features, y);
    }
  }
}

// `xb` is x rounded to bf16 when the caller shares one (Linear::WantsBf16Input), else null.
void GemvBf16Rounded(const void* w, int64_t out_features, int64_t k, const float* x,
                     const uint16_t* xb, int m, float* y) {
  std::vector<uint16_t> own;
  if (xb == nullptr) {
    own.resize(static_cast<size_t>(m) * k);
    for (int r = 0; r < m; ++r) F32ToBf16Row(x + r * k, own.data() + r * k, k);
    xb = own.data();
  }
  const auto* wb = static_cast<const uint16_t*>(w);
  WithRowCount(m,
               [&](auto rows) { GemvBf16Dot<decltype(rows)::value>(wb, out_features, k, xb, y); });
}
#endif

}  // namespace

void Linear::ForwardGemv(const float* x, int m, float* y, const uint16_t* x_bf16) const {
  switch (dtype_) {
    case DType::kF32:
      GemvT<DType::kF32>(data_, out_, in_, x, m, y);
      break;
    case DType::kBF16:
#if defined(__AVX512BF16__)
      GemvBf16Rounded(data_, out_, in_, x, x_bf16, m, y);
#else
      GemvT<DType::kBF16>(data_, out_, in_, x, m, y);
#endif
      break;
    case DType::kF16:
      GemvT<DType::kF16>(data_, out_, in_, x, m, y);
      break;
  }
}

}  // namespace ckv
