// The persistent prefix KV store: layouts round-trip bit for bit, content lookup, multi-turn
// sharing, LRU eviction, restart recovery, corruption / truncation / full disk / killed writers,
// concurrent readers, and the cost of opening a large store and of checksumming.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "ckv/prefix_store.h"
#include "kernels/dtype.h"
#include "store/checksum.h"
#include "test_util.h"

namespace ckv {
namespace {

namespace fs = std::filesystem;

::testing::AssertionResult Contains(const char* h_expr, const char* n_expr,
                                    const std::string& haystack, const std::string& needle) {
  if (haystack.find(needle) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << h_expr << " = \"" << haystack << "\"\ndoes not contain "
                                       << n_expr << " = \"" << needle << "\"";
}
#define EXPECT_CONTAINS(haystack, needle) EXPECT_PRED_FORMAT2(Contains, haystack, needle)

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

ModelConfig Tiny(int layers, int heads, int kv_heads, int head_dim) {
  return test::TinyConfig(layers, heads, kv_heads, head_dim);
}

uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// K/V of a prefix as a pure function of (token, position, layer, channel): prefixes sharing a
// beginning share its KV, as with a real model, and any reader can recompute what it expects.
struct KV {
  std::vector<std::vector<uint16_t>> k, v;
  std::vector<KVLayerData> layers;
};

KV MakeKV(const ModelConfig& cfg, std::span<const int32_t> tokens) {
  KV kv;
  const size_t dim = size_t(cfg.kv_dim());
  kv.k.resize(size_t(cfg.num_layers));
  kv.v.resize(size_t(cfg.num_layers));
  for (int l = 0; l < cfg.num_layers; ++l) {
    auto& k = kv.k[size_t(l)];
    auto& v = kv.v[size_t(l)];
    k.resize(tokens.size() * dim);
    v.resize(tokens.size() * dim);
    for (size_t t = 0; t < tokens.size(); ++t) {
      const uint64_t base = Mix(uint64_t(uint32_t(tokens[t])) * 1000003 + t * 7919 + uint64_t(l));
      for (size_t d = 0; d < dim; ++d) {
        const uint64_t h = Mix(base + d);
        k[t * dim + d] = F32ToBf16(float(int64_t(h >> 40) - (1 << 23)) / float(1 << 21));
        v[t * dim + d] =
            F32ToBf16(float(int64_t((h >> 8) & 0xffffff) - (1 << 23)) / float(1 << 21));
      }
    }
    kv.layers.push_back({k.data(), v.data()});
  }
  return kv;
}

std::vector<int32_t> RandomTokens(std::mt19937& rng, size_t n) {
  std::vector<int32_t> t(n);
  for (auto& x : t) x = int32_t(rng() % 1000);
  return t;
}

std::vector<int32_t> Head(const std::vector<int32_t>& t, size_t n) {
  return {t.begin(), t.begin() + long(n)};
}

std::unique_ptr<PrefixStore> OpenStore(const std::string& dir, StoreOptions o = {}) {
  auto s = PrefixStore::Open(dir, o);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? std::move(s).value() : nullptr;
}

PrefixInfo MustPut(PrefixStore& s, uint64_t fp, const ModelConfig& cfg, const StoreLayout& layout,
                   const std::vector<int32_t>& tokens) {
  const KV kv = MakeKV(cfg, tokens);
  auto r = s.Put(fp, cfg, layout, tokens, kv.layers);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : PrefixInfo{};
}

std::shared_ptr<const PrefixHandle> MustOpen(PrefixStore& s, const std::string& id) {
  auto h = s.OpenPrefix(id);
  EXPECT_TRUE(h.ok()) << h.status().ToString();
  return h.ok() ? *h : nullptr;
}

// Every layer reads back bit for bit; chunk reads are zero past the real tokens.
void ExpectReadsBack(const PrefixHandle& h, const ModelConfig& cfg,
                     const std::vector<int32_t>& tokens) {
  ASSERT_EQ(h.n_tokens(), int64_t(tokens.size()));
  ASSERT_TRUE(std::equal(h.tokens().begin(), h.tokens().end(), tokens.begin()));
  const KV kv = MakeKV(cfg, tokens);
  const size_t dim = size_t(cfg.kv_dim());
  const size_t n = tokens.size();
  std::vector<uint16_t> k(n * dim), v(n * dim);
  for (int l = 0; l < cfg.num_layers; ++l) {
    Status st = h.ReadLayer(l, k.data(), v.data());
    ASSERT_TRUE(st.ok()) << st.ToString();
    ASSERT_EQ(k, kv.k[size_t(l)]) << "layer " << l << " K";
    ASSERT_EQ(v, kv.v[size_t(l)]) << "layer " << l << " V";
  }
  const int64_t last = h.n_chunks() - 1;
  const size_t c = size_t(h.chunk_tokens());
  std::vector<uint16_t> ck(c * dim, 1), cv(c * dim, 1);
  ASSERT_TRUE(h.ReadLayerChunk(cfg.num_layers - 1, last, ck.data(), cv.data()).ok());
  const size_t real = size_t(h.ChunkTokens(last));
  for (size_t i = 0; i < c * dim; ++i) {
    const size_t src = size_t(last) * c * dim + i;
    ASSERT_EQ(ck[i], i < real * dim ? kv.k.back()[src] : 0) << i;
    ASSERT_EQ(cv[i], i < real * dim ? kv.v.back()[src] : 0) << i;
  }
}

// Summaries (min / max exact over the real tokens, mean close) and IMPRESS probe keys (K of the
// probe KV heads for every token) of every layer match the KV the prefix was made from.
void ExpectSummariesAndProbeKeys(const PrefixHandle& h, const ModelConfig& cfg,
                                 const std::vector<int32_t>& tokens) {
  const KV kv = MakeKV(cfg, tokens);
  const size_t dim = size_t(cfg.kv_dim());
  const int64_t c = h.chunk_tokens();
  const int64_t n = int64_t(tokens.size());
  for (int l = 0; l < cfg.num_layers; ++l) {
    auto sums = h.ReadSummaries(l);
    ASSERT_TRUE(sums.ok()) << sums.status().ToString();
    ASSERT_EQ(sums->size(), size_t(h.n_chunks()) * 3 * dim);
    for (int64_t j = 0; j < h.n_chunks(); ++j) {
      for (size_t d = 0; d < dim; ++d) {
        float mn = 1e30f, mx = -1e30f;
        double sum = 0;
        for (int64_t t = j * c; t < std::min(n, (j + 1) * c); ++t) {
          const float x = Bf16ToF32(kv.k[size_t(l)][size_t(t) * dim + d]);
          mn = std::min(mn, x);
          mx = std::max(mx, x);
          sum += x;
        }
        const float* s = sums->data() + size_t(j) * 3 * dim;
        ASSERT_EQ(s[d], mn) << "layer " << l << " chunk " << j;
        ASSERT_EQ(s[dim + d], mx) << "layer " << l << " chunk " << j;
        const double mean = sum / double(h.ChunkTokens(j));
        ASSERT_NEAR(s[2 * dim + d], mean, std::abs(mean) / 128 + 1e-6);
      }
    }
    if (h.layout().kind != LayoutKind::kImpress) continue;
    const std::vector<int>& heads = h.probe_kv_heads();
    const size_t hd = size_t(cfg.head_dim);
    auto probe = h.ReadProbeKeys(l);
    ASSERT_TRUE(probe.ok()) << probe.status().ToString();
    ASSERT_EQ(probe->size(), size_t(n) * heads.size() * hd);
    for (size_t t = 0; t < size_t(n); ++t) {
      for (size_t i = 0; i < heads.size(); ++i) {
        ASSERT_EQ(std::memcmp(probe->data() + (t * heads.size() + i) * hd,
                              kv.k[size_t(l)].data() + t * dim + size_t(heads[i]) * hd, hd * 2),
                  0)
            << "layer " << l << " token " << t;
      }
    }
  }
}

std::vector<std::string> FilesUnder(const std::string& dir, const std::string& suffix) {
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    const std::string p = e.path().string();
    if (e.is_regular_file() && p.size() >= suffix.size() &&
        p.compare(p.size() - suffix.size(), suffix.size(), suffix) == 0) {
      out.push_back(p);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

void FlipByte(const std::string& path, uint64_t offset) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(f.good()) << path;
  f.seekg(std::streamoff(offset));
  char ch;
  f.read(&ch, 1);
  ch = char(ch ^ 0x5a);
  f.seekp(std::streamoff(offset));
  f.write(&ch, 1);
  ASSERT_TRUE(f.good()) << path;
}

std::vector<std::string> Ids(const std::vector<PrefixInfo>& infos) {
  std::vector<std::string> ids;
  for (const auto& i : infos) ids.push_back(i.id);
  std::sort(ids.begin(), ids.end());
  return ids;
}

constexpr uint64_t kFp = 0x1234abcd5678ef00ULL;

// ---------------------------------------------------------------- layouts round trip

struct LayoutCase {
  StoreLayout layout;
  int kv_dim;  // 32 (4 heads, 2 kv heads of 16) or 128 (14 heads, 2 kv heads of 64)
};

std::string CaseName(const ::testing::TestParamInfo<LayoutCase>& p) {
  std::string s = p.param.layout.ToString() + "_kv" + std::to_string(p.param.kv_dim);
  for (char& ch : s) {
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  }
  return s;
}

class LayoutRoundTrip : public ::testing::TestWithParam<LayoutCase> {};

TEST_P(LayoutRoundTrip, ReadsBackBitForBitWithAlignedUnitsAndSummaries) {
  const LayoutCase& lc = GetParam();
  const ModelConfig cfg = lc.kv_dim == 32 ? Tiny(10, 4, 2, 16) : Tiny(10, 14, 2, 64);
  const std::string dir = test::MakeTempDir("store-rt");
  auto store = OpenStore(dir, {.sync = false});
  std::mt19937 rng(7);
  const auto tokens = RandomTokens(rng, 100);  // a partial last chunk for c = 8, 16, 64
  std::vector<double> progress;
  const KV put_kv = MakeKV(cfg, tokens);
  auto put = store->Put(kFp, cfg, lc.layout, tokens, put_kv.layers,
                        [&](double f) { progress.push_back(f); });
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  const PrefixInfo info = *put;
  ASSERT_FALSE(progress.empty());
  EXPECT_TRUE(std::is_sorted(progress.begin(), progress.end()));
  EXPECT_EQ(progress.back(), 1.0);
  const int c = lc.layout.chunk_tokens;
  EXPECT_EQ(info.n_tokens, 100);
  EXPECT_EQ(info.n_chunks, (100 + c - 1) / c);
  auto h = MustOpen(*store, info.id);
  ASSERT_NE(h, nullptr);
  ExpectReadsBack(*h, cfg, tokens);

  // Read units: 4 KiB aligned, whole 4 KiB multiples, holding their extents, disjoint; a
  // period-major unit holds the p layers of its period back to back.
  const bool impress = lc.layout.kind == LayoutKind::kImpress;
  const bool period = lc.layout.kind == LayoutKind::kContiguousPeriodMajor;
  const uint64_t E = uint64_t(impress ? 1 : 2) * uint64_t(c) * uint64_t(lc.kv_dim) * 2;
  std::map<uint64_t, uint32_t> units;
  const KV kv = MakeKV(cfg, tokens);
  void* aligned = nullptr;
  ASSERT_EQ(posix_memalign(&aligned, 4096, 64 << 20), 0);
  std::unique_ptr<void, decltype(&std::free)> guard(aligned, &std::free);
  for (int l = 0; l < cfg.num_layers; ++l) {
    for (int64_t j = 0; j < info.n_chunks; ++j) {
      for (KVPart part : impress ? std::vector<KVPart>{KVPart::kK, KVPart::kV}
                                 : std::vector<KVPart>{KVPart::kKV}) {
        auto u = h->LocateUnit(l, j, part);
        auto e = h->LocateExtent(l, j, part);
        ASSERT_TRUE(u.ok() && e.ok());
        EXPECT_EQ(u->offset % 4096, 0u);
        EXPECT_EQ(u->length % 4096, 0u);
        EXPECT_EQ(e->length, E);
        EXPECT_EQ(e->file, u->file);
        EXPECT_GE(e->offset, u->offset);
        EXPECT_LE(e->offset + e->length, u->offset + u->length);
        if (period) {
          const int p = lc.layout.period_layers;
          const auto [first, end_layer] = h->PeriodLayers(l / p);
          EXPECT_EQ(first, l / p * p);
          EXPECT_EQ(end_layer, std::min(cfg.num_layers, first + p));
          const int lp = std::min(p, cfg.num_layers - l / p * p);
          EXPECT_EQ(e->offset - u->offset, uint64_t(l % p) * E);
          EXPECT_EQ(u->length, (uint64_t(lp) * E + 4095) / 4096 * 4096);
          if (lc.kv_dim == 128 && c == 16) {
            EXPECT_EQ(u->length, uint64_t(lp) * E);  // no padding
          }
        }
        auto [it, inserted] = units.emplace(u->offset, u->length);
        if (!inserted) {
          EXPECT_EQ(it->second, u->length);
        }
        // One O_DIRECT read of the unit, no bounce buffer, verifies the extent.
        const StoreFile& f = h->files()[size_t(u->file)];
        if (f.direct_fd >= 0) {
          ASSERT_EQ(pread(f.direct_fd, aligned, u->length, off_t(u->offset)), ssize_t(u->length));
          const auto* bytes = static_cast<const unsigned char*>(aligned) + (e->offset - u->offset);
          EXPECT_TRUE(h->VerifyExtent(l, j, part, bytes).ok());
          if (part == KVPart::kKV && l == 0 && j == 0) {
            // K and V halves in two buffers (keys from an earlier read) verify the same.
            std::vector<unsigned char> k_copy(bytes, bytes + e->length / 2);
            const unsigned char* v_half = bytes + e->length / 2;
            EXPECT_TRUE(h->VerifyExtent(l, j, k_copy.data(), v_half).ok());
          }
          const size_t dim = size_t(lc.kv_dim);
          const size_t rows = size_t(h->ChunkTokens(j)) * dim;
          const uint16_t* k_src = kv.k[size_t(l)].data() + size_t(j) * size_t(c) * dim;
          if (part != KVPart::kV) {
            EXPECT_EQ(std::memcmp(bytes, k_src, rows * 2), 0);
          }
        }
      }
    }
  }
  uint64_t end = 0;
  for (const auto& [off, len] : units) {
    EXPECT_GE(off, end) << "units overlap";
    end = off + len;
  }
  for (const StoreFile& f : h->files()) EXPECT_GE(f.fd, 0);

  // Summaries and probe-key blocks: one 4 KiB-aligned read per layer.
  for (int l = 0; l < cfg.num_layers; ++l) {
    auto blocks = h->SummaryBlocks(l);
    ASSERT_EQ(blocks.size(), 1u);
    EXPECT_EQ(blocks[0].unit.offset % 4096, 0u);
    EXPECT_EQ(blocks[0].unit.length % 4096, 0u);
    EXPECT_EQ(blocks[0].extent.length, uint64_t(info.n_chunks) * 3 * uint64_t(lc.kv_dim) * 2);
    auto probe = h->ProbeKeyBlocks(l);
    ASSERT_EQ(probe.size(), impress ? 1u : 0u);
    if (impress) {
      EXPECT_EQ(probe[0].unit.offset % 4096, 0u);
      EXPECT_EQ(probe[0].unit.length % 4096, 0u);
    }
  }
  if (impress) {
    const std::vector<int> want = lc.kv_dim == 32 ? std::vector<int>{0, 1} : std::vector<int>{0};
    EXPECT_EQ(h->probe_kv_heads(), want);
  }
  ExpectSummariesAndProbeKeys(*h, cfg, tokens);
  EXPECT_TRUE(h->VerifyAll().ok());
  EXPECT_FALSE(h->LocateUnit(cfg.num_layers, 0, impress ? KVPart::kK : KVPart::kKV).ok());
  EXPECT_FALSE(h->LocateExtent(0, info.n_chunks, impress ? KVPart::kK : KVPart::kKV).ok());
  EXPECT_FALSE(h->LocateExtent(0, 0, impress ? KVPart::kKV : KVPart::kK).ok());
}

std::vector<LayoutCase> AllLayoutCases() {
  std::vector<LayoutCase> out;
  for (int kv : {32, 128}) {
    for (int c : {8, 16, 64}) {
      for (int p : {1, 4, 8}) out.push_back({StoreLayout::PeriodMajor(c, p), kv});
      out.push_back({StoreLayout::LayerMajor(c), kv});
      out.push_back({StoreLayout::Impress(c), kv});
    }
    out.push_back({StoreLayout::PeriodMajor(16, 16), kv});  // one period, p > layers
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(Layouts, LayoutRoundTrip, ::testing::ValuesIn(AllLayoutCases()), CaseName);

TEST(PrefixStore, RejectsBadArguments) {
  const std::string dir = test::MakeTempDir("store-args");
  auto store = OpenStore(dir, {.sync = false});
  const ModelConfig cfg = Tiny(2, 4, 2, 16);
  std::vector<int32_t> tokens(20, 5);
  KV kv = MakeKV(cfg, tokens);
  auto r = store->Put(kFp, cfg, StoreLayout::PeriodMajor(0, 8), tokens, kv.layers);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  r = store->Put(kFp, cfg, StoreLayout::PeriodMajor(), tokens,
                 std::span<const KVLayerData>(kv.layers).first(1));
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  r = store->Put(kFp, cfg, StoreLayout::Impress(64, 5), tokens, kv.layers);  // 5 > 4 heads
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  r = store->Put(kFp, cfg, StoreLayout::PeriodMajor(), {}, kv.layers);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store->OpenPrefix("0123456789abcdef").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store->Remove("nope").code(), StatusCode::kNotFound);
  EXPECT_EQ(store->size(), 0u);
}

TEST(PrefixStore, SecondOpenOfTheSameDirectoryIsRefused) {
  const std::string dir = test::MakeTempDir("store-lock");
  auto a = OpenStore(dir, {.sync = false});
  auto b = PrefixStore::Open(dir, {.sync = false});
  ASSERT_FALSE(b.ok());
  EXPECT_CONTAINS(b.status().message(), "in use");
  a.reset();
  EXPECT_TRUE(PrefixStore::Open(dir, {.sync = false}).ok());
}

TEST(PrefixStore, OpenCreatesMissingParentDirectories) {
  const std::string dir = test::MakeTempDir("store-parents") + "/a/b/store";
  EXPECT_TRUE(PrefixStore::Open(dir, {.sync = false}).ok());
  // A regular file in the way is named.
  const std::string file = test::MakeTempDir("store-parents-file") + "/f";
  std::ofstream(file) << "x";
  auto bad = PrefixStore::Open(file + "/store", {.sync = false});
  ASSERT_FALSE(bad.ok());
  EXPECT_CONTAINS(bad.status().message(), file);
}

// ---------------------------------------------------------------- lookup

TEST(PrefixStore, FindsTheLongestStoredPrefix) {
  const std::string dir = test::MakeTempDir("store-lookup");
  auto store = OpenStore(dir, {.sync = false});
  const ModelConfig cfg = Tiny(3, 4, 2, 16);
  const StoreLayout L = StoreLayout::PeriodMajor(16, 2);
  std::mt19937 rng(11);
  const auto t = RandomTokens(rng, 200);
  auto u = RandomTokens(rng, 200);
  auto t_alt = t;  // same first 32 tokens, different partial tail 32..39
  for (int i = 32; i < 40; ++i) t_alt[size_t(i)] = 1000 + i;

  const auto c20 = MustPut(*store, kFp, cfg, L, Head(t, 20));
  const auto e37 = MustPut(*store, kFp, cfg, L, Head(t, 37));
  const auto a40 = MustPut(*store, kFp, cfg, L, Head(t, 40));
  const auto f40 = MustPut(*store, kFp, cfg, L, Head(t_alt, 40));
  const auto b64 = MustPut(*store, kFp, cfg, L, Head(t, 64));
  const auto d50 = MustPut(*store, kFp, cfg, L, Head(u, 50));
  const auto s5 = MustPut(*store, kFp, cfg, L, Head(u, 5));  // shorter than one chunk
  EXPECT_EQ(store->size(), 7u);

  auto find = [&](const std::vector<int32_t>& q) -> std::string {
    auto r = store->FindLongestPrefix(kFp, L, q);
    return r ? r->id : "";
  };
  EXPECT_EQ(find(t), b64.id);
  EXPECT_EQ(find(Head(t, 64)), b64.id);
  EXPECT_EQ(find(Head(t, 63)), a40.id);
  EXPECT_EQ(find(Head(t, 40)), a40.id);
  EXPECT_EQ(find(Head(t, 39)), e37.id);
  EXPECT_EQ(find(Head(t, 36)), c20.id);
  EXPECT_EQ(find(Head(t, 19)), "");
  EXPECT_EQ(find(Head(t_alt, 45)), f40.id);
  auto q = Head(t, 50);
  q[36] = 999;  // breaks e37 and a40 (inside their last chunk), keeps c20
  EXPECT_EQ(find(q), c20.id);
  EXPECT_EQ(find(u), d50.id);
  EXPECT_EQ(find(Head(u, 49)), s5.id);
  EXPECT_EQ(find(Head(u, 4)), "");
  // Another model or another layout never matches.
  EXPECT_FALSE(store->FindLongestPrefix(kFp + 1, L, t));
  EXPECT_FALSE(store->FindLongestPrefix(kFp, StoreLayout::PeriodMajor(16, 4), t));
  EXPECT_FALSE(store->FindLongestPrefix(kFp, StoreLayout::PeriodMajor(8, 2), t));
  EXPECT_FALSE(store->FindLongestPrefix(kFp, StoreLayout::LayerMajor(16), t));
  EXPECT_FALSE(store->FindLongestPrefix(kFp, StoreLayout::Impress(16), t));
  // Layer-major ignores period_layers: these are the same layout.
  const auto lm = MustPut(*store, kFp, cfg, StoreLayout::LayerMajor(16), Head(t, 48));
  EXPECT_EQ(store->FindLongestPrefix(kFp, {LayoutKind::kContiguousLayerMajor, 16, 7, 1}, t)->id,
            lm.id);
  // Storing the same tokens again returns the stored prefix.
  EXPECT_EQ(MustPut(*store, kFp, cfg, L, Head(t, 40)).id, a40.id);
  EXPECT_EQ(store->size(), 8u);
}

// ---------------------------------------------------------------- multi-turn

struct FileId {
  ino_t ino;
  int64_t mtime_ns;
  off_t size;
  bool operator==(const FileId&) const = default;
};

FileId StatFile(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return {st.st_ino, int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec, st.st_size};
}

// Multi-turn chains in every layout: each extension references its parent's full chunks and
// reads back (KV, summaries, probe keys) across segment boundaries.
TEST(PrefixStore, ExtensionChainsReadBackInEveryLayout) {
  const ModelConfig cfg = Tiny(5, 4, 2, 16);
  std::mt19937 rng(31);
  const auto t = RandomTokens(rng, 400);
  for (const StoreLayout& L :
       {StoreLayout::PeriodMajor(16, 2), StoreLayout::PeriodMajor(8, 8),
        StoreLayout::LayerMajor(16), StoreLayout::Impress(64), StoreLayout::Impress(16)}) {
    SCOPED_TRACE(L.ToString());
    const std::string dir = test::MakeTempDir("store-chain");
    auto store = OpenStore(dir, {.sync = false});
    std::string parent;
    int segments = 0;
    for (size_t n : {70, 130, 131, 250, 400}) {
      const auto info = MustPut(*store, kFp, cfg, L, Head(t, n));
      const bool shares = !parent.empty() && store->Info(parent)->n_tokens >= L.chunk_tokens;
      EXPECT_EQ(info.parent_id, shares ? parent : "");
      segments = shares ? segments + 1 : 1;
      EXPECT_LE(info.num_segments, segments);  // a parent's partial last segment is dropped
      auto h = MustOpen(*store, info.id);
      ASSERT_NE(h, nullptr);
      ExpectReadsBack(*h, cfg, Head(t, n));
      ExpectSummariesAndProbeKeys(*h, cfg, Head(t, n));
      EXPECT_TRUE(h->VerifyAll().ok());
      parent = info.id;
    }
    EXPECT_GE(store->Info(parent)->num_segments, 2);
  }
}

TEST(PrefixStore, ExtensionSharesTheParentsDataWithoutRewritingIt) {
  const std::string dir = test::MakeTempDir("store-multiturn");
  auto store = OpenStore(dir);
  const ModelConfig cfg = Tiny(5, 4, 2, 16);
  const StoreLayout L = StoreLayout::PeriodMajor(16, 2);
  std::mt19937 rng(3);
  const auto t = RandomTokens(rng, 300);

  const auto p = MustPut(*store, kFp, cfg, L, Head(t, 40));  // 2 full chunks + 8 tokens
  auto hp = MustOpen(*store, p.id);
  ASSERT_NE(hp, nullptr);
  std::map<std::string, FileId> before;
  for (const StoreFile& f : hp->files()) before[f.path] = StatFile(f.path);

  const auto c = MustPut(*store, kFp, cfg, L, Head(t, 70));
  EXPECT_EQ(c.parent_id, p.id);
  EXPECT_EQ(c.num_segments, 2);
  EXPECT_LT(c.bytes, c.total_bytes);
  const auto g = MustPut(*store, kFp, cfg, L, Head(t, 150));
  EXPECT_EQ(g.parent_id, c.id);
  EXPECT_EQ(g.num_segments, 3);
  for (const auto& [path, id] : before) EXPECT_EQ(StatFile(path), id) << path << " was rewritten";

  auto hc = MustOpen(*store, c.id);
  auto hg = MustOpen(*store, g.id);
  ASSERT_TRUE(hc && hg);
  EXPECT_EQ(hc->files()[0].path, hp->files()[0].path);  // the parent's segment, shared
  EXPECT_EQ(hg->files()[0].path, hp->files()[0].path);
  EXPECT_EQ(hg->files()[2].path, hc->files()[2].path);
  // Summaries and units of a shared segment are located in the parent's file.
  EXPECT_EQ(hg->SummaryBlocks(1).size(), 3u);
  EXPECT_EQ(hg->LocateUnit(0, 1)->file, 0);
  EXPECT_EQ(hg->LocateUnit(0, 2)->file, 2);
  EXPECT_EQ(hg->LocateUnit(0, 4)->file, 4);
  ExpectReadsBack(*hc, cfg, Head(t, 70));
  ExpectReadsBack(*hg, cfg, Head(t, 150));

  // Removing the parent keeps its full chunks for the children; removing all deletes all.
  const int64_t total = store->total_bytes();
  ASSERT_TRUE(store->Remove(p.id).ok());
  EXPECT_EQ(store->total_bytes(), total);  // every segment is still referenced
  EXPECT_TRUE(fs::exists(hp->files()[0].path));
  ExpectReadsBack(*hp, cfg, Head(t, 40));  // an open handle keeps reading a removed prefix
  hc.reset();
  hg.reset();
  store.reset();
  store = OpenStore(dir);
  EXPECT_TRUE(store->Verify(c.id).ok());
  EXPECT_TRUE(store->Verify(g.id).ok());
  ExpectReadsBack(*MustOpen(*store, g.id), cfg, Head(t, 150));
  EXPECT_FALSE(store->FindLongestPrefix(kFp, L, Head(t, 69)));  // p is gone, c is longer
  EXPECT_EQ(store->FindLongestPrefix(kFp, L, t)->id, g.id);
  ASSERT_TRUE(store->Remove(g.id).ok());
  ASSERT_TRUE(store->Remove(c.id).ok());
  EXPECT_EQ(store->total_bytes(), 0);
  EXPECT_TRUE(FilesUnder(dir + "/segments", "").empty());
  EXPECT_TRUE(FilesUnder(dir + "/manifests", "").empty());
}

// ---------------------------------------------------------------- LRU and restart

TEST(PrefixStore, EvictsLeastRecentlyUsedPrefixesUnderMaxBytes) {
  const ModelConfig cfg = Tiny(4, 4, 2, 16);
  const StoreLayout L = StoreLayout::PeriodMajor(16, 2);
  std::mt19937 rng(5);
  std::vector<std::vector<int32_t>> t;
  for (int i = 0; i < 6; ++i) t.push_back(RandomTokens(rng, 64));
  int64_t one = 0;
  {
    auto probe = OpenStore(test::MakeTempDir("store-lru-probe"), {.sync = false});
    one = MustPut(*probe, kFp, cfg, L, t[0]).bytes;
  }
  const std::string dir = test::MakeTempDir("store-lru");
  auto store = OpenStore(dir, {.max_bytes = one * 7 / 2, .sync = false});
  const auto a = MustPut(*store, kFp, cfg, L, t[0]);
  const auto b = MustPut(*store, kFp, cfg, L, t[1]);
  const auto c = MustPut(*store, kFp, cfg, L, t[2]);
  ASSERT_TRUE(store->Touch(a.id).ok());
  const auto d = MustPut(*store, kFp, cfg, L, t[3]);  // evicts b
  EXPECT_EQ(Ids(store->List()), Ids({a, c, d}));
  EXPECT_LE(store->total_bytes(), one * 7 / 2);
  ASSERT_TRUE(store->FindLongestPrefix(kFp, L, t[2]));  // a lookup is a use
  const auto e = MustPut(*store, kFp, cfg, L, t[4]);    // evicts a
  EXPECT_EQ(Ids(store->List()), Ids({c, d, e}));
  EXPECT_EQ(FilesUnder(dir + "/segments", ".kv").size(), 3u);
  EXPECT_EQ(FilesUnder(dir + "/manifests", ".manifest").size(), 3u);

  // Too large for the bound at all: NoSpace, nothing evicted.
  std::vector<int32_t> big = RandomTokens(rng, 64 * 8);
  KV kv = MakeKV(cfg, big);
  auto r = store->Put(kFp, cfg, L, big, kv.layers);
  EXPECT_EQ(r.status().code(), StatusCode::kNoSpace) << r.status().ToString();
  EXPECT_EQ(store->size(), 3u);

  // LRU times survive a restart.
  const int64_t used_c = store->Info(c.id)->last_used_unix_ms;
  store.reset();
  store = OpenStore(dir, {.max_bytes = one * 7 / 2, .sync = false});
  EXPECT_EQ(store->Info(c.id)->last_used_unix_ms, used_c);
  const auto f = MustPut(*store, kFp, cfg, L, t[5]);  // evicts d (c was used after d)
  EXPECT_EQ(Ids(store->List()), Ids({c, e, f}));
}

TEST(PrefixStore, RestartRecoversTheIndexFromManifests) {
  const std::string dir = test::MakeTempDir("store-restart");
  const ModelConfig cfg = Tiny(3, 4, 2, 16);
  const StoreLayout L = StoreLayout::Impress(16);
  std::mt19937 rng(9);
  const auto t = RandomTokens(rng, 100);
  std::vector<PrefixInfo> put;
  auto store = OpenStore(dir);
  for (int n : {10, 33, 64, 90}) put.push_back(MustPut(*store, kFp, cfg, L, Head(t, size_t(n))));
  const auto listed = Ids(store->List());
  store.reset();

  auto check = [&](PrefixStore& s) {
    EXPECT_EQ(Ids(s.List()), listed);
    EXPECT_EQ(s.FindLongestPrefix(kFp, L, t)->id, put.back().id);
    EXPECT_EQ(s.FindLongestPrefix(kFp, L, Head(t, 63))->id, put[1].id);
    ExpectReadsBack(*MustOpen(s, put[2].id), cfg, Head(t, 64));
  };
  store = OpenStore(dir);
  check(*store);
  store.reset();
  // A clean reopen uses the index as it is (no rebuild, no rewrite).
  const FileId index_before = StatFile(dir + "/index");
  OpenStore(dir).reset();
  EXPECT_EQ(StatFile(dir + "/index"), index_before);
  // Index missing, damaged, or stale (a Put after it was written): rebuilt from the manifests.
  fs::remove(dir + "/index");
  store = OpenStore(dir);
  check(*store);
  store.reset();
  FlipByte(dir + "/index", 40);
  store = OpenStore(dir);
  check(*store);
  store.reset();
  fs::copy_file(dir + "/index", dir + "/index.old");
  store = OpenStore(dir);
  const auto extra = MustPut(*store, kFp, cfg, L, RandomTokens(rng, 50));
  store.reset();
  fs::rename(dir + "/index.old", dir + "/index");
  store = OpenStore(dir);
  EXPECT_TRUE(store->Info(extra.id).ok());
  EXPECT_EQ(store->size(), listed.size() + 1);
}

TEST(PrefixStore, OpenRemovesTemporaryFilesAndUnreferencedSegments) {
  const std::string dir = test::MakeTempDir("store-leftovers");
  const ModelConfig cfg = Tiny(2, 4, 2, 16);
  std::mt19937 rng(1);
  const auto t = RandomTokens(rng, 40);
  std::string id;
  {
    auto store = OpenStore(dir);
    id = MustPut(*store, kFp, cfg, StoreLayout::PeriodMajor(), t).id;
  }
  for (const std::string& p :
       {dir + "/segments/0123456789abcdef.kv.tmp", dir + "/manifests/fedcba9876543210.manifest.tmp",
        dir + "/index.tmp", dir + "/segments/00000000000000aa.kv",
        dir + "/segments/00000000000000aa.sum"}) {
    std::ofstream(p) << "leftover";
  }
  auto store = OpenStore(dir);
  EXPECT_TRUE(FilesUnder(dir, ".tmp").empty());
  EXPECT_FALSE(fs::exists(dir + "/segments/00000000000000aa.kv"));
  EXPECT_FALSE(fs::exists(dir + "/segments/00000000000000aa.sum"));
  EXPECT_TRUE(store->Verify(id).ok());
}

// ---------------------------------------------------------------- integrity

TEST(PrefixStore, DetectsAndQuarantinesCorruptData) {
  const std::string dir = test::MakeTempDir("store-corrupt");
  auto store = OpenStore(dir);
  const ModelConfig cfg = Tiny(4, 4, 2, 16);
  const StoreLayout L = StoreLayout::PeriodMajor(16, 2);
  std::mt19937 rng(2);
  const auto t = RandomTokens(rng, 100);
  const auto u = RandomTokens(rng, 100);
  const auto a = MustPut(*store, kFp, cfg, L, t);
  const auto b = MustPut(*store, kFp, cfg, L, u);

  // One flipped byte in layer 2, chunk 3 of a's data file.
  auto h = MustOpen(*store, a.id);
  ASSERT_NE(h, nullptr);
  auto e = h->LocateExtent(2, 3);
  ASSERT_TRUE(e.ok());
  const std::string kv_path = h->files()[size_t(e->file)].path;
  FlipByte(kv_path, e->offset + 100);
  std::vector<uint16_t> k(16 * 32), v(16 * 32);
  EXPECT_TRUE(h->ReadLayerChunk(2, 2, k.data(), v.data()).ok());
  Status st = h->ReadLayerChunk(2, 3, k.data(), v.data());
  EXPECT_EQ(st.code(), StatusCode::kCorruption);
  EXPECT_CONTAINS(st.message(), a.id);
  EXPECT_CONTAINS(st.message(), kv_path);
  EXPECT_CONTAINS(st.message(), "layer 2 chunk 3");
  // Quarantined: not listed, not matched, evidence kept aside.
  EXPECT_FALSE(store->Info(a.id).ok());
  EXPECT_FALSE(store->FindLongestPrefix(kFp, L, t));
  EXPECT_TRUE(fs::exists(dir + "/quarantine/" + a.id + ".manifest"));
  EXPECT_TRUE(fs::exists(dir + "/quarantine/" + a.id + ".reason"));
  EXPECT_FALSE(fs::exists(kv_path));
  EXPECT_EQ(store->Verify(a.id).code(), StatusCode::kNotFound);

  // A flipped summary byte is found by Verify.
  auto hb = MustOpen(*store, b.id);
  const LayerBlock blk = hb->SummaryBlocks(1)[0];
  const std::string sum_path = hb->files()[size_t(blk.extent.file)].path;
  FlipByte(sum_path, blk.extent.offset + 7);
  st = store->Verify(b.id);
  EXPECT_EQ(st.code(), StatusCode::kCorruption);
  EXPECT_CONTAINS(st.message(), b.id);
  EXPECT_CONTAINS(st.message(), sum_path);
  EXPECT_CONTAINS(st.message(), "layer 1");
  EXPECT_EQ(store->size(), 0u);
  store.reset();
  store = OpenStore(dir);
  EXPECT_EQ(store->size(), 0u);
}

TEST(PrefixStore, CorruptSharedSegmentQuarantinesEveryPrefixUsingIt) {
  const std::string dir = test::MakeTempDir("store-corrupt-shared");
  auto store = OpenStore(dir, {.sync = false});
  const ModelConfig cfg = Tiny(2, 4, 2, 16);
  const StoreLayout L = StoreLayout::LayerMajor(16);
  std::mt19937 rng(4);
  const auto t = RandomTokens(rng, 100);
  const auto p = MustPut(*store, kFp, cfg, L, Head(t, 50));
  const auto c = MustPut(*store, kFp, cfg, L, t);
  ASSERT_EQ(c.parent_id, p.id);
  auto h = MustOpen(*store, c.id);
  auto e = h->LocateExtent(1, 0);
  FlipByte(h->files()[size_t(e->file)].path, e->offset);
  EXPECT_EQ(store->Verify(c.id).code(), StatusCode::kCorruption);
  EXPECT_EQ(store->size(), 0u);  // the parent stores the same damaged chunk
}

TEST(PrefixStore, DetectsCorruptManifests) {
  const std::string dir = test::MakeTempDir("store-manifest");
  const ModelConfig cfg = Tiny(2, 4, 2, 16);
  const StoreLayout L = StoreLayout::PeriodMajor();
  std::mt19937 rng(6);
  const auto t = RandomTokens(rng, 40);
  const auto u = RandomTokens(rng, 40);
  auto store = OpenStore(dir);
  const auto a = MustPut(*store, kFp, cfg, L, t);
  const auto b = MustPut(*store, kFp, cfg, L, u);
  const std::string ma = dir + "/manifests/" + a.id + ".manifest";
  FlipByte(ma, 30);
  EXPECT_FALSE(store->FindLongestPrefix(kFp, L, t));  // read, fails to verify, quarantined
  EXPECT_FALSE(store->Info(a.id).ok());
  EXPECT_TRUE(fs::exists(dir + "/quarantine/" + a.id + ".manifest"));
  // Damaged while the store is closed: found on open (not in the index) or on use.
  const std::string mb = dir + "/manifests/" + b.id + ".manifest";
  FlipByte(mb, fs::file_size(mb) - 5);
  Status st = store->Verify(b.id);
  EXPECT_EQ(st.code(), StatusCode::kCorruption);
  EXPECT_CONTAINS(st.message(), b.id);
  EXPECT_CONTAINS(st.message(), mb);
  EXPECT_EQ(store->size(), 0u);
  const auto c = MustPut(*store, kFp, cfg, L, t);
  store.reset();
  fs::remove(dir + "/index");
  const std::string mc = dir + "/manifests/" + c.id + ".manifest";
  fs::resize_file(mc, fs::file_size(mc) / 2);
  store = OpenStore(dir);
  EXPECT_EQ(store->size(), 0u);
  EXPECT_TRUE(fs::exists(dir + "/quarantine/" + c.id + ".manifest"));
}

TEST(PrefixStore, DetectsTruncatedDataFiles) {
  const std::string dir = test::MakeTempDir("store-trunc");
  auto store = OpenStore(dir);
  const ModelConfig cfg = Tiny(3, 4, 2, 16);
  const StoreLayout L = StoreLayout::PeriodMajor(16, 8);
  std::mt19937 rng(8);
  const auto t = RandomTokens(rng, 100);
  const auto u = RandomTokens(rng, 100);
  const auto a = MustPut(*store, kFp, cfg, L, t);
  const auto b = MustPut(*store, kFp, cfg, L, u);
  // Truncated before opening: OpenPrefix refuses it.
  auto h = MustOpen(*store, a.id);
  const std::string path = h->files()[0].path;
  h.reset();
  fs::resize_file(path, 8192);
  auto r = store->OpenPrefix(a.id);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kCorruption);
  EXPECT_CONTAINS(r.status().message(), a.id);
  EXPECT_CONTAINS(r.status().message(), path);
  EXPECT_CONTAINS(r.status().message(), "truncated");
  EXPECT_FALSE(store->Info(a.id).ok());
  // Truncated under an open handle: the read fails as corruption naming layer and chunk.
  auto hb = MustOpen(*store, b.id);
  fs::resize_file(hb->files()[0].path, 8192);
  std::vector<uint16_t> k(16 * 32), v(16 * 32);
  Status st = hb->ReadLayerChunk(1, 5, k.data(), v.data());
  EXPECT_EQ(st.code(), StatusCode::kCorruption);
  EXPECT_CONTAINS(st.message(), b.id);
  EXPECT_CONTAINS(st.message(), "layer 1 chunk 5");
  EXPECT_CONTAINS(st.message(), "truncated");
  EXPECT_EQ(store->size(), 0u);
}

// ---------------------------------------------------------------- full disk

void ExpectConsistent(const std::string& dir, const std::vector<std::string>& ids) {
  EXPECT_TRUE(FilesUnder(dir, ".tmp").empty());
  auto store = OpenStore(dir, {.sync = false});
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(Ids(store->List()), ids);
  for (const auto& id : ids) EXPECT_TRUE(store->Verify(id).ok()) << id;
  EXPECT_EQ(FilesUnder(dir + "/segments", ".kv").size(), ids.size());
}

TEST(PrefixStore, FullDiskFailsThePutCleanlyAtEveryWritePoint) {
  const std::string dir = test::MakeTempDir("store-enospc");
  const ModelConfig cfg = Tiny(3, 4, 2, 16);
  const StoreLayout L = StoreLayout::PeriodMajor(16, 2);
  std::mt19937 rng(12);
  const auto t = RandomTokens(rng, 300);
  std::string base_id;
  {
    auto store = OpenStore(dir);
    base_id = MustPut(*store, kFp, cfg, L, Head(t, 100)).id;
  }
  int calls = 0, fail_at = 0;
  StoreOptions opt;
  opt.fault_injection = [&](const std::string&) { return ++calls == fail_at ? ENOSPC : 0; };
  int failures = 0;
  for (fail_at = 1;; ++fail_at) {
    calls = 0;
    std::vector<std::string> before = FilesUnder(dir + "/segments", "");
    {
      auto store = OpenStore(dir, opt);
      ASSERT_NE(store, nullptr);
      calls = 0;
      const auto kv = MakeKV(cfg, t);  // extends the stored prefix: shares its segment
      auto r = store->Put(kFp, cfg, L, t, kv.layers);
      if (r.ok()) break;
      ++failures;
      EXPECT_EQ(r.status().code(), StatusCode::kNoSpace) << r.status().ToString();
      EXPECT_CONTAINS(r.status().message(), dir);
      EXPECT_TRUE(FilesUnder(dir, ".tmp").empty());
      EXPECT_EQ(FilesUnder(dir + "/segments", ""), before);
      EXPECT_EQ(Ids(store->List()), std::vector<std::string>{base_id});
      calls = -1000000;  // let the index flush at close succeed
    }
    ExpectConsistent(dir, {base_id});
    ASSERT_LT(fail_at, 50);
  }
  EXPECT_GE(failures, 5);  // kv data, kv fsync, sum data, sum fsync, manifest data, fsync
}

// A prefix that could fit only if its own parent (being extended) went too fails before
// anything is evicted: the other prefixes stay.
TEST(PrefixStore, APutThatCannotFitEvictsNothing) {
  const ModelConfig cfg = Tiny(4, 4, 2, 16);
  const StoreLayout L = StoreLayout::PeriodMajor(16, 2);
  std::mt19937 rng(21);
  const auto other = RandomTokens(rng, 64);
  const auto t = RandomTokens(rng, 64 * 6);
  int64_t one = 0;
  {
    auto probe = OpenStore(test::MakeTempDir("store-nofit-probe"), {.sync = false});
    one = MustPut(*probe, kFp, cfg, L, other).bytes;
  }
  const std::string dir = test::MakeTempDir("store-nofit");
  auto store = OpenStore(dir, {.max_bytes = one * 4, .sync = false});
  const auto a = MustPut(*store, kFp, cfg, L, other);                 // 1 unit of size, LRU victim
  const auto parent = MustPut(*store, kFp, cfg, L, Head(t, 64 * 2));  // 2 units
  // Extending the parent needs 4 more units: 2 + 4 > 4 even with `a` gone.
  const KV kv = MakeKV(cfg, t);
  auto r = store->Put(kFp, cfg, L, t, kv.layers);
  ASSERT_EQ(r.status().code(), StatusCode::kNoSpace) << r.status().ToString();
  EXPECT_CONTAINS(r.status().message(), "nothing evicted");
  EXPECT_EQ(Ids(store->List()), Ids({a, parent}));
  EXPECT_TRUE(store->Verify(a.id).ok());
}

// Removal and quarantine when the manifest cannot be removed or moved: the prefix's segments
// stay where its manifest says they are, whatever happened.
TEST(PrefixStore, AManifestThatCannotBeRemovedKeepsItsSegments) {
  const std::string dir = test::MakeTempDir("store-unlink");
  const ModelConfig cfg = Tiny(3, 4, 2, 16);
  const StoreLayout L = StoreLayout::PeriodMajor(16, 2);
  std::mt19937 rng(22);
  bool fail_manifests = false;
  StoreOptions opt{.sync = false};
  opt.fault_injection = [&](const std::string& path) {
    return fail_manifests && path.find("/manifests/") != std::string::npos ? EIO : 0;
  };
  std::string id;
  {
    auto store = OpenStore(dir, opt);
    id = MustPut(*store, kFp, cfg, L, RandomTokens(rng, 100)).id;
    fail_manifests = true;
    const Status st = store->Remove(id);
    EXPECT_EQ(st.code(), StatusCode::kIOError) << st.ToString();
    EXPECT_CONTAINS(st.message(), id + ".manifest");
    EXPECT_EQ(store->size(), 1u);
    EXPECT_TRUE(store->Verify(id).ok());

    // Quarantine (a damaged segment found by Verify) with the manifest stuck: the prefix
    // leaves the index, its segments are not moved away from under the manifest.
    const auto segs = FilesUnder(dir + "/segments", ".kv");
    ASSERT_EQ(segs.size(), 1u);
    {
      std::fstream f(segs[0], std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(100);
      f.put('\x5a');
    }
    EXPECT_EQ(store->Verify(id).code(), StatusCode::kCorruption);
    EXPECT_EQ(store->size(), 0u);
    EXPECT_EQ(FilesUnder(dir + "/segments", ".kv"), segs);
    EXPECT_EQ(FilesUnder(dir + "/manifests", ".manifest").size(), 1u);
    fail_manifests = false;
  }
  // Reopened, every manifest still finds its segments; the damage is found again on reading.
  auto store = OpenStore(dir, {.sync = false});
  ASSERT_NE(store, nullptr);
  for (const auto& info : store->List())
    EXPECT_EQ(store->Verify(info.id).code(), StatusCode::kCorruption);
}

TEST(PrefixStore, FileSizeLimitIsReportedAsNoSpace) {
  const std::string dir = test::MakeTempDir("store-fsize");
  const ModelConfig cfg = Tiny(4, 4, 2, 16);
  std::mt19937 rng(13);
  const auto t = RandomTokens(rng, 200);
  auto store = OpenStore(dir);
  const auto small = MustPut(*store, kFp, cfg, StoreLayout::PeriodMajor(), Head(t, 16));
  const KV kv = MakeKV(cfg, t);
  struct rlimit old;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  struct rlimit lim = old;
  lim.rlim_cur = 64 * 1024;  // the new segment needs 200 KiB
  auto old_handler = signal(SIGXFSZ, SIG_IGN);
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &lim), 0);
  auto r = store->Put(kFp, cfg, StoreLayout::PeriodMajor(), t, kv.layers);
  setrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, old_handler);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNoSpace) << r.status().ToString();
  store.reset();
  ExpectConsistent(dir, {small.id});
}

// ---------------------------------------------------------------- crashes and concurrency

TEST(PrefixStore, SurvivesAWriterKilledAtRandomPoints) {
  const std::string dir = test::MakeTempDir("store-kill");
  const ModelConfig cfg = Tiny(3, 4, 2, 16);
  const StoreLayout layouts[] = {StoreLayout::PeriodMajor(16, 2), StoreLayout::Impress(16)};
  std::mt19937 rng(77);
  std::vector<std::vector<int32_t>> docs;
  for (int d = 0; d < 4; ++d) docs.push_back(RandomTokens(rng, 256));
  const auto t0 = std::chrono::steady_clock::now();
  int total_puts_seen = 0;
  int caught_mid_write = 0;  // kills that left temporary files behind
  for (int iter = 0; iter < 40; ++iter) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      StoreOptions o;
      o.sync = iter % 2 == 0;
      o.max_bytes = 2 << 20;
      auto s = PrefixStore::Open(dir, o);
      if (!s.ok()) _exit(3);
      std::mt19937 crng{static_cast<uint32_t>(iter)};
      for (;;) {
        const auto& doc = docs[crng() % docs.size()];
        const auto tokens = Head(doc, 1 + crng() % 200);
        const KV kv = MakeKV(cfg, tokens);
        auto r = (*s)->Put(kFp, cfg, layouts[crng() % 2], tokens, kv.layers);
        if (!r.ok()) _exit(4);
        if (crng() % 8 == 0) {
          auto list = (*s)->List();
          if (!list.empty() && !(*s)->Remove(list[crng() % list.size()].id).ok()) _exit(5);
        }
      }
    }
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 40000));
    kill(pid, SIGKILL);
    int wstatus = 0;
    ASSERT_EQ(waitpid(pid, &wstatus, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(wstatus)) << "writer exited by itself with " << WEXITSTATUS(wstatus);

    if (!FilesUnder(dir, ".tmp").empty()) ++caught_mid_write;
    auto store = OpenStore(dir, {.max_bytes = 2 << 20, .sync = false});
    ASSERT_NE(store, nullptr);
    EXPECT_TRUE(FilesUnder(dir, ".tmp").empty());
    std::set<std::string> segments;
    for (const PrefixInfo& info : store->List()) {
      ASSERT_TRUE(store->Verify(info.id).ok()) << "iteration " << iter;
      auto h = MustOpen(*store, info.id);
      ASSERT_NE(h, nullptr);
      ExpectReadsBack(*h, cfg, std::vector<int32_t>(h->tokens().begin(), h->tokens().end()));
      for (const StoreFile& f : h->files()) segments.insert(f.path);
      ++total_puts_seen;
    }
    EXPECT_EQ(FilesUnder(dir + "/segments", "").size(), segments.size()) << "orphans left";
    EXPECT_TRUE(FilesUnder(dir + "/quarantine", "").empty()) << "iteration " << iter;
  }
  std::printf("[ kill test ] 40 kills in %.1f s (%d mid-write), %d prefixes verified after kills\n",
              Seconds(t0), caught_mid_write, total_puts_seen);
}

TEST(PrefixStore, ReadersNeverSeeTornDataWhileAWriterPublishes) {
  const std::string dir = test::MakeTempDir("store-concurrent");
  const ModelConfig cfg = Tiny(4, 4, 2, 16);
  const StoreLayout L = StoreLayout::PeriodMajor(16, 2);
  std::mt19937 rng(21);
  std::vector<std::vector<int32_t>> docs;
  for (int d = 0; d < 3; ++d) docs.push_back(RandomTokens(rng, 400));
  auto store = OpenStore(dir, {.max_bytes = 3 << 20, .sync = false});  // evicts while reading
  std::atomic<bool> done{false};
  std::atomic<int> reads{0}, not_found{0};
  std::atomic<bool> failed{false};
  std::string error;  // written by the reader only, read after join
  std::thread reader([&] {
    std::mt19937 r(99);
    while (!done.load() && !failed.load()) {
      const auto& doc = docs[r() % docs.size()];
      const auto q = Head(doc, 1 + r() % 400);
      auto found = store->FindLongestPrefix(kFp, L, q);
      if (!found) continue;
      auto h = store->OpenPrefix(found->id);
      if (!h.ok()) {
        if (h.status().code() == StatusCode::kNotFound) {
          ++not_found;
          continue;
        }
        error = h.status().ToString();
        failed = true;
        break;
      }
      const auto tokens = std::vector<int32_t>((*h)->tokens().begin(), (*h)->tokens().end());
      if (!std::equal(tokens.begin(), tokens.end(), q.begin()))
        error = "lookup returned a non-prefix";
      const KV kv = MakeKV(cfg, tokens);
      std::vector<uint16_t> k(tokens.size() * 32), v(tokens.size() * 32);
      for (int l = 0; l < cfg.num_layers && error.empty(); ++l) {
        Status st = (*h)->ReadLayer(l, k.data(), v.data());
        if (!st.ok())
          error = st.ToString();
        else if (k != kv.k[size_t(l)] || v != kv.v[size_t(l)])
          error = "torn or wrong data";
      }
      ++reads;
      if (!error.empty()) failed = true;
    }
  });
  std::mt19937 w(5);
  for (int i = 0; i < 120 && !failed.load(); ++i) {
    const auto& doc = docs[w() % docs.size()];
    const auto tokens = Head(doc, 1 + w() % 400);
    const KV kv = MakeKV(cfg, tokens);
    auto r = store->Put(kFp, cfg, L, tokens, kv.layers);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok()) break;
  }
  done = true;
  reader.join();
  EXPECT_EQ(error, "");
  EXPECT_GT(reads.load(), 0);
  std::printf(
      "[ concurrent ] %d verified reads, %d not-found (evicted) during 120 puts; %zu "
      "prefixes left\n",
      reads.load(), not_found.load(), store->size());
}

// ---------------------------------------------------------------- scale and cost

// Ten thousand prefixes open (from the index, and rebuilding it from every manifest) and are
// found; how long that takes is `ckv bench store`'s to measure, not a unit test's.
TEST(PrefixStore, OpensTenThousandPrefixes) {
  const std::string dir = test::MakeTempDir("store-10k");
  const ModelConfig cfg = Tiny(1, 1, 1, 8);
  const StoreLayout L = StoreLayout::PeriodMajor(16, 8);
  std::vector<int32_t> tokens(16);
  std::vector<uint16_t> k(16 * 8), v(16 * 8);
  const KVLayerData layer{k.data(), v.data()};
  auto t0 = std::chrono::steady_clock::now();
  {
    auto store = OpenStore(dir, {.sync = false});
    for (int i = 0; i < 10000; ++i) {
      tokens[0] = i / 1000;
      tokens[1] = i % 1000;
      k[0] = uint16_t(i);
      auto r = store->Put(kFp, cfg, L, tokens, std::span<const KVLayerData>(&layer, 1));
      ASSERT_TRUE(r.ok()) << r.status().ToString();
    }
  }
  const double create_s = Seconds(t0);
  t0 = std::chrono::steady_clock::now();
  auto store = OpenStore(dir, {.sync = false});
  const double open_s = Seconds(t0);
  ASSERT_EQ(store->size(), 10000u);
  tokens[0] = 7;
  tokens[1] = 123;
  auto found = store->FindLongestPrefix(kFp, L, tokens);
  ASSERT_TRUE(found);
  auto h = MustOpen(*store, found->id);
  std::vector<uint16_t> kk(16 * 8), vv(16 * 8);
  ASSERT_TRUE(h->ReadLayerChunk(0, 0, kk.data(), vv.data()).ok());
  EXPECT_EQ(kk[0], uint16_t(7123));
  store.reset();
  fs::remove(dir + "/index");
  t0 = std::chrono::steady_clock::now();
  store = OpenStore(dir, {.sync = false});
  const double rebuild_s = Seconds(t0);
  EXPECT_EQ(store->size(), 10000u);
  std::printf(
      "[ 10k prefixes ] create %.2f s, open with index %.1f ms, open rebuilding the index "
      "from 10k manifests %.1f ms (ckv bench store)\n",
      create_s, open_s * 1e3, rebuild_s * 1e3);
}

}  // namespace
}  // namespace ckv
