// ckv bench store: what the store's own bookkeeping costs, measured here rather than asserted in
// unit tests: opening a store of many prefixes (with its index, and rebuilding the index from
// every manifest), and verifying checksums (XXH3-64, the store's) next to reading the same
// bytes.
#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>

#include "ckv/prefix_store.h"
#include "cli_common.h"

namespace ckv::cli {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct BenchStoreArgs {
  std::string dir;
  int prefixes = 10000;
  int checksum_mib = 128;
  bool json = false;
};

// Many one-chunk prefixes of a one-layer model: the store's per-prefix costs dominate.
Result<nlohmann::json> MeasureOpen(const std::string& dir, int n) {
  ModelConfig cfg;
  cfg.arch = ModelArch::kQwen2;
  cfg.model_type = "qwen2";
  cfg.num_layers = 1;
  cfg.num_heads = 1;
  cfg.num_kv_heads = 1;
  cfg.head_dim = 8;
  cfg.hidden_size = 8;
  cfg.vocab_size = 100000;
  const StoreLayout layout = StoreLayout::PeriodMajor(16, 8);
  std::vector<int32_t> tokens(16);
  std::vector<uint16_t> k(16 * 8), v(16 * 8);
  const KVLayerData layer{k.data(), v.data()};
  StoreOptions so;
  so.sync = false;  // the open path is measured, not the fsyncs of creating it
  auto t0 = Clock::now();
  {
    CKV_ASSIGN_OR_RETURN(auto store, PrefixStore::Open(dir, so));
    for (int i = 0; i < n; ++i) {
      tokens[0] = i / 1000;
      tokens[1] = i % 1000;
      k[0] = static_cast<uint16_t>(i);
      CKV_RETURN_IF_ERROR(
          store->Put(1, cfg, layout, tokens, std::span<const KVLayerData>(&layer, 1)).status());
    }
  }
  const double create_s = SecondsSince(t0);
  t0 = Clock::now();
  size_t listed = 0;
  {
    CKV_ASSIGN_OR_RETURN(auto store, PrefixStore::Open(dir, so));
    listed = store->size();
  }
  const double open_s = SecondsSince(t0);
  std::error_code ec;
  fs::remove(dir + "/index", ec);
  t0 = Clock::now();
  {
    CKV_ASSIGN_OR_RETURN(auto store, PrefixStore::Open(dir, so));
    if (store->size() != listed) return Status::Internal("rebuilt index lost prefixes");
  }
  const double rebuild_s = SecondsSince(t0);
  return nlohmann::json{{"prefixes", listed},
                        {"create_s", create_s},
                        {"open_with_index_ms", open_s * 1e3},
                        {"open_rebuilding_index_ms", rebuild_s * 1e3}};
}

Result<nlohmann::json> MeasureChecksum(const std::string& dir, size_t bytes) {
  void* p = nullptr;
  if (posix_memalign(&p, 4096, bytes) != 0) return Status::NoSpace("checksum buffer");
  std::unique_ptr<void, decltype(&std::free)> guard(p, &std::free);
  auto* buf = static_cast<unsigned char*>(p);
  std::mt19937_64 rng(1);
  for (size_t i = 0; i + 8 <= bytes; i += 8) {
    const uint64_t x = rng();
    std::memcpy(buf + i, &x, 8);
  }
  auto t0 = Clock::now();
  uint64_t sink = 0;
  constexpr int kReps = 4;
  for (int rep = 0; rep < kReps; ++rep) {
    for (size_t off = 0; off + 8192 <= bytes; off += 8192) sink ^= XXH3_64bits(buf + off, 8192);
  }
  const double xxh_gbs = kReps * static_cast<double>(bytes) / SecondsSince(t0) / 1e9;
  const std::string path = dir + "/checksum.dat";
  {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return Status::IOError("cannot create " + path);
    const bool ok = ::write(fd, buf, bytes) == static_cast<ssize_t>(bytes) && ::fsync(fd) == 0;
    ::close(fd);
    if (!ok) return Status::IOError("cannot write " + path);
  }
  auto read_gbs = [&](int flags, size_t unit) {
    const int fd = ::open(path.c_str(), O_RDONLY | flags);
    if (fd < 0) return 0.0;
    const auto t = Clock::now();
    for (size_t off = 0; off + unit <= bytes; off += unit) {
      if (::pread(fd, buf, unit, static_cast<off_t>(off)) != static_cast<ssize_t>(unit)) {
        ::close(fd);
        return 0.0;
      }
    }
    const double s = SecondsSince(t);
    ::close(fd);
    return static_cast<double>(bytes) / s / 1e9;
  };
  nlohmann::json j{{"xxh3_8k_gbs", xxh_gbs},
                   {"page_cache_read_gbs", read_gbs(0, 1 << 20)},
                   {"o_direct_256k_read_gbs", read_gbs(O_DIRECT, 256 << 10)},
                   {"o_direct_16k_read_gbs", read_gbs(O_DIRECT, 16 << 10)},
                   {"sink", sink & 1}};
  std::error_code ec;
  fs::remove(path, ec);
  return j;
}

int RunBenchStore(const BenchStoreArgs& a) {
  std::error_code ec;
  const std::string store_dir = a.dir + "/ckv-bench-store";
  fs::remove_all(store_dir, ec);
  fs::create_directories(store_dir, ec);
  if (ec) return Fail(Status::IOError("cannot create " + store_dir + ": " + ec.message()));
  auto open = MeasureOpen(store_dir, a.prefixes);
  fs::remove_all(store_dir, ec);
  if (!open.ok()) return Fail(open.status());
  auto sum = MeasureChecksum(a.dir, static_cast<size_t>(a.checksum_mib) << 20);
  if (!sum.ok()) return Fail(sum.status());
  nlohmann::json j = *open;
  j.update(*sum);
  if (a.json) {
    std::cout << j.dump() << "\n";
    return 0;
  }
  std::printf(
      "%d prefixes: create %.2f s, open with index %.1f ms, open rebuilding the index from "
      "every manifest %.1f ms\nXXH3-64 over 8 KiB extents %.1f GB/s; reads: page cache %.1f "
      "GB/s, O_DIRECT 256 KiB %.2f GB/s, O_DIRECT 16 KiB %.2f GB/s\n",
      a.prefixes, j["create_s"].get<double>(), j["open_with_index_ms"].get<double>(),
      j["open_rebuilding_index_ms"].get<double>(), j["xxh3_8k_gbs"].get<double>(),
      j["page_cache_read_gbs"].get<double>(), j["o_direct_256k_read_gbs"].get<double>(),
      j["o_direct_16k_read_gbs"].get<double>());
  return 0;
}

}  // namespace

void RegisterBenchStore(CLI::App& bench, std::vector<Command>& out) {
  auto a = std::make_shared<BenchStoreArgs>();
  CLI::App* app = bench.add_subcommand(
      "store", "Store bookkeeping: open time with many prefixes, checksum rate next to reads");
  app->add_option("--dir", a->dir, "Scratch directory (a store and a test file go under it)")
      ->required();
  app->add_option("--prefixes", a->prefixes, "Prefixes in the store to open")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app->add_option("--checksum-mib", a->checksum_mib, "Bytes checksummed and read, in MiB")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  app->add_flag("--json", a->json, "One JSON object");
  out.push_back({app, [a]() { return RunBenchStore(*a); }});
}

}  // namespace ckv::cli
