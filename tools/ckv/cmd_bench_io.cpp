// ckv bench io: O_DIRECT read bandwidth and IOPS of the IoEngine over a grid of
// pattern x block size x queue depth, keeping `depth` reads in flight (bench/fio_compare.sh
// runs fio on the same file and grid).
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli_common.h"
#include "io/aligned_buffer.h"
#include "io/direct_file.h"
#include "io/io_engine.h"

namespace ckv::cli {
namespace {

using Clock = std::chrono::steady_clock;
using io::AlignedBuffer;
using io::BufferPool;
using io::DirectFile;
using io::IoEngine;
using io::ReadCompletion;
using io::ReadRequest;

struct BenchIoArgs {
  std::string dir;
  int file_mib = 1024;
  std::string block_kib = "4,16,32,64,256";
  std::string depth = "1,2,4,8,16,32,64";
  std::string pattern = "seq,rand";
  double seconds = 2;
  std::string backend = "auto";
  int threads = 0;
  int submit_batch = 4;
  bool no_fixed = false;
  bool no_huge = false;
  bool json = false;
};

Result<std::vector<int>> ParseIntList(const std::string& option, const std::string& text, int lo,
                                      int hi) {
  std::vector<int> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    long v = 0;
    try {
      v = std::stol(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    while (used < item.size() && item[used] == ' ') ++used;
    if (used == 0 || used != item.size() || v < lo || v > hi)
      return Status::InvalidArgument(option + ": \"" + item + "\" is not an integer in " +
                                     std::to_string(lo) + ".." + std::to_string(hi));
    out.push_back(static_cast<int>(v));
  }
  if (out.empty()) return Status::InvalidArgument(option + ": empty list");
  return out;
}

uint64_t NextRandom(uint64_t& s) {  // xorshift64*
  s ^= s >> 12;
  s ^= s << 25;
  s ^= s >> 27;
  return s * 0x2545F4914F6CDD1Dull;
}

// Creates (or reuses, when the size matches) the test file: written with O_DIRECT in 1 MiB
// blocks of non-zero pseudo-random bytes, then fsynced.
Result<DirectFile> PrepareFile(const std::string& path, uint64_t bytes) {
  {
    std::error_code ec;
    const auto size = std::filesystem::file_size(path, ec);
    if (!ec && size == bytes) return DirectFile::OpenForRead(path);
  }
  std::cerr << "writing test file " << path << " (" << (bytes >> 20) << " MiB)...\n";
  CKV_ASSIGN_OR_RETURN(DirectFile out, DirectFile::OpenForWrite(path));
  if (!out.direct()) std::cerr << out.warning() << "\n";
  if (::ftruncate(out.fd(), 0) != 0)
    return Status::IOError("cannot truncate " + path + ": " + std::strerror(errno));
  const size_t chunk = size_t{1} << 20;
  CKV_ASSIGN_OR_RETURN(AlignedBuffer buf, AlignedBuffer::Allocate(chunk));
  uint64_t seed = 0x9E3779B97F4A7C15ull;
  for (uint64_t off = 0; off < bytes; off += chunk) {
    auto* words = reinterpret_cast<uint64_t*>(buf.data());
    for (size_t i = 0; i < chunk / 8; ++i) words[i] = NextRandom(seed) | 0x0101010101010101ull;
    const size_t n = static_cast<size_t>(std::min<uint64_t>(chunk, bytes - off));
    size_t done = 0;
    while (done < n) {
      const ssize_t w = ::pwrite(out.fd(), buf.data() + done, n - done, off + done);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0)
        return Status::IOError("cannot write " + path + " at " + std::to_string(off + done) + ": " +
                               (w < 0 ? std::strerror(errno) : "no progress"));
      done += static_cast<size_t>(w);
    }
  }
  CKV_RETURN_IF_ERROR(out.Sync());
  CKV_RETURN_IF_ERROR(out.Close());
  return DirectFile::OpenForRead(path);
}

struct PointResult {
  uint64_t ios = 0;
  double seconds = 0;
};

// Keeps `depth` reads of `block` bytes in flight for `seconds`; buffers come from `pool`.
Result<PointResult> RunPoint(IoEngine& engine, BufferPool& pool, const DirectFile& file,
                             uint64_t file_bytes, bool random, uint32_t block, int depth,
                             double seconds) {
  std::vector<io::PoolBuffer> bufs;
  for (int i = 0; i < depth; ++i) {
    CKV_ASSIGN_OR_RETURN(auto b, pool.TryAcquire(block));
    bufs.push_back(std::move(b));
  }
  const uint64_t blocks = file_bytes / block;
  uint64_t seed = 0x243F6A8885A308D3ull ^ (uint64_t{block} << 20) ^ uint64_t(depth);
  uint64_t next_seq = 0;
  auto next_offset = [&]() -> uint64_t {
    if (random) return (NextRandom(seed) % blocks) * block;
    const uint64_t off = next_seq * block;
    next_seq = (next_seq + 1) % blocks;
    return off;
  };
  std::vector<ReadRequest> reqs;
  for (int i = 0; i < depth; ++i)
    reqs.push_back({file.fd(), next_offset(), block, bufs[size_t(i)].data(), uint64_t(i)});
  const auto t0 = Clock::now();
  const auto end =
      t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  CKV_RETURN_IF_ERROR(engine.Submit(reqs));
  PointResult r;
  std::vector<ReadCompletion> done;
  Clock::time_point now = t0;
  Status failure;
  while (now < end) {
    done.clear();
    CKV_ASSIGN_OR_RETURN(const size_t n, engine.Reap(done, 1, std::chrono::microseconds(1000000)));
    now = Clock::now();
    if (n == 0) {
      failure = Status::IOError("no read completed within 1 s");
      break;
    }
    reqs.clear();
    for (const ReadCompletion& c : done) {
      if (c.result != static_cast<int32_t>(block)) {
        failure = Status::IOError(
            "read of " + std::to_string(block) + " bytes returned " + std::to_string(c.result) +
            (c.result < 0 ? std::string(" (") + std::strerror(-c.result) + ")" : ""));
        break;
      }
      ++r.ios;
      if (now < end) reqs.push_back({file.fd(), next_offset(), block, bufs[c.tag].data(), c.tag});
    }
    if (!failure.ok()) break;
    if (!reqs.empty()) CKV_RETURN_IF_ERROR(engine.Submit(reqs));
  }
  r.seconds = std::chrono::duration<double>(now - t0).count();
  // Let the reads still in flight finish before their buffers go back to the pool.
  while (engine.in_flight() > 0) {
    done.clear();
    CKV_ASSIGN_OR_RETURN(const size_t n,
                         engine.Reap(done, engine.in_flight(), std::chrono::seconds(30)));
    if (n == 0) return Status::IOError("reads still in flight after 30 s");
  }
  if (!failure.ok()) return failure.WithContext(file.path());
  return r;
}

int RunBenchIo(const BenchIoArgs& a) {
  auto blocks = ParseIntList("--block-kib", a.block_kib, 4, 1 << 20);
  if (!blocks.ok()) return Fail(blocks.status());
  auto depths = ParseIntList("--depth", a.depth, 1, 4096);
  if (!depths.ok()) return Fail(depths.status());
  std::vector<bool> patterns;
  {
    std::stringstream ss(a.pattern);
    std::string p;
    while (std::getline(ss, p, ',')) {
      if (p == "seq") {
        patterns.push_back(false);
      } else if (p == "rand") {
        patterns.push_back(true);
      } else {
        return Fail(Status::InvalidArgument("--pattern: \"" + p + "\" is not seq or rand"));
      }
    }
  }
  if (patterns.empty()) return Fail(Status::InvalidArgument("--pattern: empty list"));
  for (int b : *blocks)
    if (b % 4 != 0)
      return Fail(Status::InvalidArgument("--block-kib: sizes must be 4 KiB multiples"));
  auto backend = io::ParseIoBackend(a.backend);
  if (!backend.ok()) return Fail(backend.status());
  if (a.file_mib < 1) return Fail(Status::InvalidArgument("--file-mib must be >= 1"));
  if (!(a.seconds > 0)) return Fail(Status::InvalidArgument("--seconds must be > 0"));

  const int max_depth = *std::max_element(depths->begin(), depths->end());
  const int max_block_kib = *std::max_element(blocks->begin(), blocks->end());
  const uint64_t file_bytes = uint64_t(a.file_mib) << 20;
  if (uint64_t(max_block_kib) << 10 > file_bytes)
    return Fail(Status::InvalidArgument("--block-kib larger than --file-mib"));

  const std::string path = (std::filesystem::path(a.dir) / "ckv-bench-io.dat").string();
  auto file = PrepareFile(path, file_bytes);
  if (!file.ok()) return Fail(file.status());
  if (!file->direct()) {
    std::cerr << "\n!!! " << file->warning() << "\n"
              << "!!! THESE NUMBERS ARE NOT O_DIRECT READS: the page cache is in use.\n\n";
  }

  // The pool before the engine: the engine is destroyed first, waiting for its reads.
  io::BufferPoolOptions popts;
  popts.capacity_bytes = size_t(max_depth) * size_t(max_block_kib) * 1024;
  popts.huge_pages = !a.no_huge;
  auto pool = BufferPool::Create(popts);
  if (!pool.ok()) return Fail(pool.status());

  io::IoOptions opts;
  opts.backend = *backend;
  opts.queue_depth = static_cast<uint32_t>(max_depth);
  opts.threads = static_cast<uint32_t>(a.threads > 0 ? a.threads : std::min(max_depth, 256));
  opts.submit_batch = static_cast<uint32_t>(std::max(a.submit_batch, 0));
  auto engine = IoEngine::Create(opts);
  if (!engine.ok()) return Fail(engine.status());
  if (!(*engine)->fallback_reason().empty())
    std::cerr << "note: io_uring unavailable (" << (*engine)->fallback_reason()
              << "); using the thread-pool backend\n";

  if (!a.no_fixed) {
    if (Status st = (*engine)->RegisterBuffers(*pool); !st.ok())
      std::cerr << "note: " << st.message() << "\n";
  }
  const bool registered = (*engine)->buffers_registered();

  if (!a.json) {
    std::printf("file %s (%d MiB, %s), backend %s%s, %s buffers, %.3g s per point\n", path.c_str(),
                a.file_mib, file->direct() ? "O_DIRECT" : "BUFFERED: O_DIRECT REFUSED",
                (*engine)->name(), registered ? " (registered buffers)" : "",
                popts.huge_pages ? "huge-page" : "4 KiB-page", a.seconds);
    std::printf("%-8s %9s %6s %12s %12s\n", "pattern", "block_kib", "depth", "MiB/s", "IOPS");
  }
  for (bool random : patterns) {
    for (int bk : *blocks) {
      for (int d : *depths) {
        auto r =
            RunPoint(**engine, **pool, *file, file_bytes, random, uint32_t(bk) << 10, d, a.seconds);
        if (!r.ok()) return Fail(r.status());
        const double iops = double(r->ios) / r->seconds;
        const double mib_s = iops * bk / 1024.0;
        if (a.json) {
          nlohmann::json j{{"tool", "ckv"},
                           {"backend", (*engine)->name()},
                           {"registered_buffers", registered},
                           {"submit_batch", opts.submit_batch},
                           {"huge_pages", popts.huge_pages},
                           {"direct", file->direct()},
                           {"file", path},
                           {"pattern", random ? "rand" : "seq"},
                           {"block_kib", bk},
                           {"depth", d},
                           {"seconds", r->seconds},
                           {"ios", r->ios},
                           {"mib_s", mib_s},
                           {"iops", iops}};
          std::cout << j.dump() << std::endl;
        } else {
          std::printf("%-8s %9d %6d %12.1f %12.0f\n", random ? "rand" : "seq", bk, d, mib_s, iops);
          std::fflush(stdout);
        }
      }
    }
  }
  return 0;
}

}  // namespace

void RegisterBenchIo(CLI::App& bench, std::vector<Command>& out) {
  auto a = std::make_shared<BenchIoArgs>();
  CLI::App* io = bench.add_subcommand(
      "io", "O_DIRECT read bandwidth / IOPS of the I/O engine (pattern x block size x depth)");
  io->add_option("--dir", a->dir, "Directory for the test file (ckv-bench-io.dat)")->required();
  io->add_option("--file-mib", a->file_mib, "Test file size in MiB")->capture_default_str();
  io->add_option("--block-kib", a->block_kib, "Block sizes in KiB, comma-separated")
      ->capture_default_str();
  io->add_option("--depth", a->depth, "Reads in flight, comma-separated")->capture_default_str();
  io->add_option("--pattern", a->pattern, "seq, rand or both")->capture_default_str();
  io->add_option("--seconds", a->seconds, "Seconds per point")->capture_default_str();
  io->add_option("--backend", a->backend, "auto | uring | threads")->capture_default_str();
  io->add_option("--threads", a->threads, "Threads backend: workers (default: the largest depth)");
  io->add_option("--submit-batch", a->submit_batch,
                 "io_uring: new reads per io_uring_enter after the first (0: all at once)")
      ->capture_default_str();
  io->add_flag("--no-fixed", a->no_fixed,
               "io_uring: do not register the buffers (plain IORING_OP_READ)");
  io->add_flag("--no-huge-pages", a->no_huge,
               "Buffers in 4 KiB pages (no MADV_HUGEPAGE), like fio's default malloc buffers");
  io->add_flag("--json", a->json, "One JSON object per point instead of the table");
  out.push_back({io, [a]() { return RunBenchIo(*a); }});
}

}  // namespace ckv::cli
