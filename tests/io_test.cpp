// The asynchronous read path: aligned buffers and the bounded pool, O_DIRECT files with their
// buffered fallback, and both IoEngine backends (io_uring and the pread thread pool).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "io/aligned_buffer.h"
#include "io/direct_file.h"
#include "io/io_engine.h"
#include "test_util.h"

namespace ckv::io {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;

// Byte i of every test file: position-dependent, so a read from the wrong offset shows.
uint8_t PatternByte(uint64_t i) {
  uint64_t x = (i / 8) * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
  x ^= x >> 29;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 32;
  return static_cast<uint8_t>(x >> (8 * (i % 8)));
}

std::string WritePatternFile(const std::string& path, uint64_t size) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  std::vector<char> chunk(1 << 16);
  for (uint64_t off = 0; off < size;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(chunk.size(), size - off));
    for (size_t i = 0; i < n; ++i) chunk[i] = static_cast<char>(PatternByte(off + i));
    f.write(chunk.data(), static_cast<std::streamsize>(n));
    off += n;
  }
  f.close();
  EXPECT_TRUE(f.good()) << "writing " << path;
  return path;
}

// Index of the first byte of `data` differing from the pattern at `offset`, or -1.
int64_t FirstMismatch(const std::byte* data, uint64_t offset, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (static_cast<uint8_t>(data[i]) != PatternByte(offset + i)) return static_cast<int64_t>(i);
  return -1;
}

struct BackendParam {
  IoBackend backend;
  bool register_buffers;
};

std::string ParamName(const testing::TestParamInfo<BackendParam>& info) {
  std::string n = info.param.backend == IoBackend::kUring ? "Uring" : "Threads";
  return n + (info.param.register_buffers ? "Registered" : "Plain");
}

class EngineTest : public testing::TestWithParam<BackendParam> {
 protected:
  void SetUp() override { dir_ = test::MakeTempDir("io"); }

  // The engine of the test's backend, or nullptr after GTEST_SKIP when io_uring is unavailable.
  std::unique_ptr<IoEngine> MakeEngine(uint32_t depth) {
    auto e = IoEngine::Create({GetParam().backend, depth, 4});
    if (!e.ok() && GetParam().backend == IoBackend::kUring &&
        e.status().code() == StatusCode::kUnsupported) {
      return nullptr;
    }
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    if (!e.ok()) return nullptr;
    EXPECT_STREQ((*e)->name(), GetParam().backend == IoBackend::kUring ? "io_uring" : "threads");
    return std::move(e).value();
  }

  std::string dir_;
};

#define MAKE_ENGINE_OR_SKIP(var, depth)                                   \
  auto var = MakeEngine(depth);                                           \
  if (!var) {                                                             \
    if (HasFailure()) return;                                             \
    GTEST_SKIP() << "io_uring is not available here (kernel or seccomp)"; \
  }

TEST_P(EngineTest, RandomExtentsMatchFileContent) {
  const uint64_t file_size = 8 << 20;
  const std::string path = WritePatternFile(dir_ + "/data", file_size);
  auto file = DirectFile::OpenForRead(path);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_TRUE(file->direct()) << "the test directory should support O_DIRECT";
  auto pool = BufferPool::Create({.capacity_bytes = 32 << 20});
  ASSERT_TRUE(pool.ok()) << pool.status().ToString();
  MAKE_ENGINE_OR_SKIP(engine, 8);
  if (GetParam().register_buffers) {
    ASSERT_TRUE(engine->RegisterBuffers(*pool).ok());
    EXPECT_EQ(engine->buffers_registered(), GetParam().backend == IoBackend::kUring);
  }

  std::mt19937_64 rng(42);
  const uint32_t sizes_kib[] = {4, 8, 16, 32, 64, 128, 256};
  for (int round = 0; round < 4; ++round) {
    std::vector<PoolBuffer> bufs;
    std::vector<ReadRequest> reqs;
    for (int i = 0; i < 40; ++i) {  // 40 reads > depth 8: most wait in the engine's queue
      const uint32_t len = sizes_kib[rng() % 7] * 1024;
      const uint64_t off = (rng() % ((file_size - len) / kIoAlignment + 1)) * kIoAlignment;
      auto b = (*pool)->TryAcquire(len);
      ASSERT_TRUE(b.ok()) << b.status().ToString();
      std::memset(b->data(), 0, len);
      reqs.push_back({file->fd(), off, len, b->data(), static_cast<uint64_t>(i)});
      bufs.push_back(std::move(b).value());
    }
    ASSERT_TRUE(engine->Submit(reqs).ok());
    std::vector<ReadCompletion> done;
    auto n = engine->Reap(done, reqs.size(), std::chrono::seconds(30));
    ASSERT_TRUE(n.ok()) << n.status().ToString();
    ASSERT_EQ(*n, reqs.size());
    EXPECT_EQ(engine->in_flight(), 0u);
    std::set<uint64_t> tags;
    for (const ReadCompletion& c : done) {
      ASSERT_LT(c.tag, reqs.size());
      tags.insert(c.tag);
      const ReadRequest& r = reqs[c.tag];
      ASSERT_EQ(c.result, static_cast<int32_t>(r.length)) << "tag " << c.tag;
      EXPECT_EQ(FirstMismatch(bufs[c.tag].data(), r.offset, r.length), -1)
          << "tag " << c.tag << " offset " << r.offset << " length " << r.length;
    }
    EXPECT_EQ(tags.size(), reqs.size());
  }
}

TEST_P(EngineTest, ManyMoreReadsThanQueueDepth) {
  const uint64_t file_size = 4 << 20;
  const std::string path = WritePatternFile(dir_ + "/data", file_size);
  auto file = DirectFile::OpenForRead(path);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  const size_t kReads = 1000;
  auto pool = BufferPool::Create({.capacity_bytes = kReads * 4096});
  ASSERT_TRUE(pool.ok());
  MAKE_ENGINE_OR_SKIP(engine, 4);
  if (GetParam().register_buffers) {
    ASSERT_TRUE(engine->RegisterBuffers(*pool).ok());
  }
  std::vector<PoolBuffer> bufs;
  std::vector<ReadRequest> reqs;
  for (size_t i = 0; i < kReads; ++i) {
    auto b = (*pool)->TryAcquire(4096);
    ASSERT_TRUE(b.ok());
    const uint64_t off = (i * 7919 % (file_size / 4096)) * 4096;
    reqs.push_back({file->fd(), off, 4096, b->data(), i});
    bufs.push_back(std::move(b).value());
  }
  // Submitted in uneven batches, reaped a few at a time in between.
  std::vector<ReadCompletion> done;
  size_t next = 0;
  while (next < kReads) {
    const size_t batch = std::min<size_t>(kReads - next, 1 + next % 97);
    ASSERT_TRUE(engine->Submit({reqs.data() + next, batch}).ok());
    next += batch;
    auto n = engine->Reap(done, 3, std::chrono::seconds(10));
    ASSERT_TRUE(n.ok()) << n.status().ToString();
  }
  // Polling never waits and never fails.
  auto polled = engine->Reap(done, kReads, microseconds(0));
  ASSERT_TRUE(polled.ok()) << polled.status().ToString();
  while (done.size() < kReads) {
    auto n = engine->Reap(done, kReads - done.size(), std::chrono::seconds(30));
    ASSERT_TRUE(n.ok()) << n.status().ToString();
    ASSERT_GT(*n, 0u) << "timed out with " << engine->in_flight() << " in flight";
  }
  EXPECT_EQ(engine->in_flight(), 0u);
  std::vector<int> seen(kReads, 0);
  for (const ReadCompletion& c : done) {
    ASSERT_LT(c.tag, kReads);
    ++seen[c.tag];
    ASSERT_EQ(c.result, 4096);
    EXPECT_EQ(FirstMismatch(bufs[c.tag].data(), reqs[c.tag].offset, 4096), -1) << c.tag;
  }
  for (size_t i = 0; i < kReads; ++i) EXPECT_EQ(seen[i], 1) << "tag " << i;
}

TEST_P(EngineTest, ReadsPastEndOfFileAreShort) {
  const uint64_t file_size = 3 * 4096 + 100;  // unaligned tail
  const std::string path = WritePatternFile(dir_ + "/data", file_size);
  auto file = DirectFile::OpenForRead(path);
  ASSERT_TRUE(file.ok());
  auto size = file->Size();
  ASSERT_TRUE(size.ok());
  EXPECT_EQ(*size, file_size);
  auto pool = BufferPool::Create({.capacity_bytes = 1 << 20});
  ASSERT_TRUE(pool.ok());
  MAKE_ENGINE_OR_SKIP(engine, 4);
  if (GetParam().register_buffers) {
    ASSERT_TRUE(engine->RegisterBuffers(*pool).ok());
  }
  auto a = (*pool)->TryAcquire(8192), b = (*pool)->TryAcquire(8192), c = (*pool)->TryAcquire(4096);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  const ReadRequest reqs[] = {
      {file->fd(), 8192, 8192, a->data(), 1},   // straddles EOF: 4096 + 100 bytes
      {file->fd(), 16384, 8192, b->data(), 2},  // starts past EOF: 0 bytes
      {file->fd(), 0, 4096, c->data(), 3},      // whole
  };
  ASSERT_TRUE(engine->Submit(reqs).ok());
  std::vector<ReadCompletion> done;
  auto n = engine->Reap(done, 3, microseconds::max());
  ASSERT_TRUE(n.ok());
  ASSERT_EQ(*n, 3u);
  std::map<uint64_t, int32_t> res;
  for (const auto& d : done) res[d.tag] = d.result;
  EXPECT_EQ(res[1], 4196);
  EXPECT_EQ(FirstMismatch(a->data(), 8192, 4196), -1);
  EXPECT_EQ(res[2], 0);
  EXPECT_EQ(res[3], 4096);
  EXPECT_EQ(FirstMismatch(c->data(), 0, 4096), -1);
}

TEST_P(EngineTest, BadRequestsGiveCleanErrors) {
  const std::string path = WritePatternFile(dir_ + "/data", 1 << 20);
  auto file = DirectFile::OpenForRead(path);
  ASSERT_TRUE(file.ok());
  ASSERT_TRUE(file->direct());
  auto buf = AlignedBuffer::Allocate(3 * 4096);
  ASSERT_TRUE(buf.ok());
  MAKE_ENGINE_OR_SKIP(engine, 4);

  // Rejected up front, nothing queued.
  const ReadRequest bad_fd{-1, 0, 4096, buf->data(), 7};
  Status st = engine->Submit({&bad_fd, 1});
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("tag 7"), std::string::npos) << st.message();
  const ReadRequest no_dst{file->fd(), 0, 4096, nullptr, 8};
  EXPECT_EQ(engine->Submit({&no_dst, 1}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->in_flight(), 0u);

  // Failing in the kernel: -errno in the completion.
  const int closed_fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(closed_fd, 0);
  ::close(closed_fd);
  const ReadRequest kernel_errors[] = {
      {closed_fd, 0, 4096, buf->data(), 1},                 // EBADF
      {file->fd(), 100, 4096, buf->data() + 4096, 2},       // O_DIRECT misaligned offset: EINVAL
      {file->fd(), 4096, 4096, buf->data() + 4096 * 2, 3},  // fine
  };
  ASSERT_TRUE(engine->Submit(kernel_errors).ok());
  std::vector<ReadCompletion> done;
  auto n = engine->Reap(done, 3, std::chrono::seconds(10));
  ASSERT_TRUE(n.ok());
  ASSERT_EQ(*n, 3u);
  std::map<uint64_t, int32_t> res;
  for (const auto& d : done) res[d.tag] = d.result;
  EXPECT_EQ(res[1], -EBADF);
  EXPECT_EQ(res[2], -EINVAL);
  EXPECT_EQ(res[3], 4096);

  // Nothing in flight: Reap returns at once, whatever the minimum.
  done.clear();
  auto none = engine->Reap(done, 5, std::chrono::seconds(10));
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, 0u);
}

TEST_P(EngineTest, DestroyWithReadsInFlightFromAnotherThread) {
  const std::string path = WritePatternFile(dir_ + "/data", 4 << 20);
  auto file = DirectFile::OpenForRead(path);
  ASSERT_TRUE(file.ok());
  auto pool = BufferPool::Create({.capacity_bytes = 4 << 20});
  ASSERT_TRUE(pool.ok());
  std::unique_ptr<IoEngine> engine;
  std::thread([&] { engine = MakeEngine(8); }).join();  // created on another thread
  if (!engine) {
    if (HasFailure()) return;
    GTEST_SKIP() << "io_uring is not available here";
  }
  if (GetParam().register_buffers) {
    ASSERT_TRUE(engine->RegisterBuffers(*pool).ok());
  }
  auto buf = (*pool)->TryAcquire(4 << 20);
  ASSERT_TRUE(buf.ok());
  std::vector<ReadRequest> reqs;
  for (uint64_t i = 0; i < 64; ++i)
    reqs.push_back({file->fd(), i * 65536, 65536, buf->data() + i * 65536, i});
  ASSERT_TRUE(engine->Submit(reqs).ok());
  std::thread([&] { engine.reset(); }).join();  // destroyed on a third, reads outstanding
  buf->Release();                               // safe: the engine waited for the kernel
  EXPECT_EQ((*pool)->in_use(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Backends, EngineTest,
                         testing::Values(BackendParam{IoBackend::kUring, true},
                                         BackendParam{IoBackend::kUring, false},
                                         BackendParam{IoBackend::kThreads, true},
                                         BackendParam{IoBackend::kThreads, false}),
                         ParamName);

TEST(IoEngine, UringSubmitBatchSizes) {
  const std::string dir = test::MakeTempDir("io");
  const uint64_t file_size = 2 << 20;
  const std::string path = WritePatternFile(dir + "/data", file_size);
  auto file = DirectFile::OpenForRead(path);
  ASSERT_TRUE(file.ok());
  auto buf = AlignedBuffer::Allocate(300 * 4096);
  ASSERT_TRUE(buf.ok());
  for (uint32_t batch : {0u, 1u, 3u, 64u}) {
    IoOptions o;
    o.backend = IoBackend::kUring;
    o.queue_depth = 16;
    o.submit_batch = batch;
    auto e = IoEngine::Create(o);
    if (!e.ok()) GTEST_SKIP() << e.status().ToString();
    std::memset(buf->data(), 0, buf->size());
    std::vector<ReadRequest> reqs;
    for (uint64_t i = 0; i < 300; ++i)
      reqs.push_back({file->fd(), (i * 37 % 512) * 4096, 4096, buf->data() + i * 4096, i});
    ASSERT_TRUE((*e)->Submit(reqs).ok());
    std::vector<ReadCompletion> done;
    auto n = (*e)->Reap(done, reqs.size(), std::chrono::seconds(30));
    ASSERT_TRUE(n.ok());
    ASSERT_EQ(*n, reqs.size()) << "batch " << batch;
    for (const auto& c : done) {
      ASSERT_EQ(c.result, 4096);
      ASSERT_EQ(FirstMismatch(buf->data() + c.tag * 4096, reqs[c.tag].offset, 4096), -1);
    }
  }
}

TEST(IoEngine, EnvironmentForcesThreadsBackend) {
  ASSERT_EQ(::setenv("CKV_IO_BACKEND", "threads", 1), 0);
  auto e = IoEngine::Create({});
  ::unsetenv("CKV_IO_BACKEND");
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_STREQ((*e)->name(), "threads");
  // An explicit backend wins over the environment.
  ASSERT_EQ(::setenv("CKV_IO_BACKEND", "bogus", 1), 0);
  auto bad = IoEngine::Create({});
  auto explicit_threads = IoEngine::Create({IoBackend::kThreads, 8, 2});
  ::unsetenv("CKV_IO_BACKEND");
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("CKV_IO_BACKEND"), std::string::npos);
  ASSERT_TRUE(explicit_threads.ok());
  EXPECT_STREQ((*explicit_threads)->name(), "threads");
  // Auto picks something that works and says which.
  auto any = IoEngine::Create({});
  ASSERT_TRUE(any.ok());
  const std::string name = (*any)->name();
  EXPECT_TRUE(name == "io_uring" || name == "threads") << name;
  if (name == "threads") {
    EXPECT_FALSE((*any)->fallback_reason().empty());
  }
}

TEST(IoEngine, RejectsBadOptions) {
  EXPECT_EQ(IoEngine::Create({IoBackend::kUring, 0, 4}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(IoEngine::Create({IoBackend::kThreads, 8, 0}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseIoBackend("fast").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(*ParseIoBackend("uring"), IoBackend::kUring);
}

// ---- DirectFile ----

TEST(DirectFile, MissingFileIsNotFound) {
  const std::string path = test::MakeTempDir("io") + "/no-such-file";
  auto f = DirectFile::OpenForRead(path);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), StatusCode::kNotFound);
  EXPECT_NE(f.status().message().find(path), std::string::npos) << f.status().message();
}

TEST(DirectFile, DirectoryIsRefused) {
  auto f = DirectFile::OpenForRead(test::MakeTempDir("io"));
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), StatusCode::kInvalidArgument);
}

// Reads `n` bytes at `offset` through a fresh engine; returns the completion result.
int32_t ReadThrough(IoBackend backend, int fd, uint64_t offset, uint32_t n, void* dst) {
  auto e = IoEngine::Create({backend, 4, 2});
  if (!e.ok()) return INT32_MIN;
  const ReadRequest r{fd, offset, n, dst, 0};
  if (!(*e)->Submit({&r, 1}).ok()) return INT32_MIN;
  std::vector<ReadCompletion> done;
  auto got = (*e)->Reap(done, 1, std::chrono::seconds(10));
  if (!got.ok() || done.size() != 1) return INT32_MIN;
  return done[0].result;
}

// A filesystem that refuses O_DIRECT (open fails with EINVAL): procfs always does.
TEST(DirectFile, FallsBackWhenTheFilesystemRefusesODirect) {
  auto f = DirectFile::OpenForRead("/proc/self/cmdline");
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_FALSE(f->direct());
  EXPECT_NE(f->warning().find("O_DIRECT"), std::string::npos) << f->warning();
  EXPECT_NE(f->warning().find("/proc/self/cmdline"), std::string::npos);
  const std::string expected = test::ReadFileOrDie("/proc/self/cmdline");
  ASSERT_FALSE(expected.empty());
  for (IoBackend b : {IoBackend::kUring, IoBackend::kThreads}) {
    std::vector<char> buf(4096, 0);
    const int32_t n = ReadThrough(b, f->fd(), 0, 4096, buf.data());
    if (n == INT32_MIN && b == IoBackend::kUring) continue;  // no io_uring here
    ASSERT_EQ(n, static_cast<int32_t>(expected.size())) << IoBackendName(b);
    EXPECT_EQ(std::string(buf.data(), static_cast<size_t>(n)), expected);
  }
}

// tmpfs refused O_DIRECT before Linux 6.6 and accepts it since; either way the file opens and
// reads work (unaligned ones too when the fallback is in use).
TEST(DirectFile, TmpfsFileReadsEitherWay) {
  if (::access("/dev/shm", W_OK) != 0) GTEST_SKIP() << "/dev/shm is not writable";
  char tmpl[] = "/dev/shm/ckv-io-test-XXXXXX";
  const int tfd = ::mkstemp(tmpl);
  ASSERT_GE(tfd, 0);
  ::close(tfd);
  const std::string path = tmpl;
  WritePatternFile(path, 64 * 1024 + 10);
  auto f = DirectFile::OpenForRead(path);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->direct(), f->warning().empty());
  std::cout << "[ note ] /dev/shm O_DIRECT: "
            << (f->direct() ? "accepted (tmpfs, Linux >= 6.6)" : "refused, buffered fallback")
            << "\n";
  auto buf = AlignedBuffer::Allocate(64 * 1024);
  ASSERT_TRUE(buf.ok());
  for (IoBackend b : {IoBackend::kUring, IoBackend::kThreads}) {
    std::memset(buf->data(), 0, buf->size());
    const int32_t n = ReadThrough(b, f->fd(), 8192, 32768, buf->data());
    if (n == INT32_MIN && b == IoBackend::kUring) continue;
    EXPECT_EQ(n, 32768) << IoBackendName(b);
    EXPECT_EQ(FirstMismatch(buf->data(), 8192, 32768), -1) << IoBackendName(b);
    // The 10-byte tail past the last full page.
    const int32_t tail = ReadThrough(b, f->fd(), 65536, 4096, buf->data());
    EXPECT_EQ(tail, 10) << IoBackendName(b);
    EXPECT_EQ(FirstMismatch(buf->data(), 65536, 10), -1) << IoBackendName(b);
    if (!f->direct()) {
      const int32_t odd = ReadThrough(b, f->fd(), 3, 1000, buf->data() + 1);
      EXPECT_EQ(odd, 1000) << IoBackendName(b);
      EXPECT_EQ(FirstMismatch(buf->data() + 1, 3, 1000), -1) << IoBackendName(b);
    }
  }
  ::unlink(path.c_str());
}

TEST(DirectFile, WriteThenReadBack) {
  const std::string path = test::MakeTempDir("io") + "/w";
  auto f = DirectFile::OpenForWrite(path);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  auto buf = AlignedBuffer::Allocate(8192);
  ASSERT_TRUE(buf.ok());
  for (size_t i = 0; i < 8192; ++i) buf->data()[i] = static_cast<std::byte>(PatternByte(i));
  ASSERT_EQ(::pwrite(f->fd(), buf->data(), 8192, 0), 8192);
  ASSERT_TRUE(f->Sync().ok());
  ASSERT_TRUE(f->Close().ok());
  EXPECT_FALSE(f->is_open());
  auto r = DirectFile::OpenForRead(path);
  ASSERT_TRUE(r.ok());
  auto size = r->Size();
  ASSERT_TRUE(size.ok());
  EXPECT_EQ(*size, 8192u);
}

// ---- buffers ----

TEST(AlignedBuffer, IsAlignedAndMovable) {
  auto b = AlignedBuffer::Allocate(10000);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b->data()) % kIoAlignment, 0u);
  EXPECT_EQ(b->size(), 10000u);
  AlignedBuffer moved = std::move(b).value();
  EXPECT_NE(moved.data(), nullptr);
  EXPECT_EQ(AlignedBuffer::Allocate(64, 3).status().code(), StatusCode::kInvalidArgument);
  auto empty = AlignedBuffer::Allocate(0);
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->size(), 0u);
}

TEST(BufferPool, NeverExceedsItsCap) {
  auto pool = BufferPool::Create({.capacity_bytes = 1 << 20});
  ASSERT_TRUE(pool.ok());
  auto& p = *pool;
  EXPECT_EQ(p->capacity(), 1u << 20);
  ASSERT_EQ(p->slabs().size(), 1u);
  std::vector<PoolBuffer> held;
  for (int i = 0; i < 4; ++i) {
    auto b = p->TryAcquire(256 * 1024);
    ASSERT_TRUE(b.ok()) << i;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(b->data()) % kIoAlignment, 0u);
    EXPECT_EQ(b->slab(), 0);
    EXPECT_EQ(p->SlabOf(b->data(), b->size()), 0);
    held.push_back(std::move(b).value());
  }
  EXPECT_EQ(p->in_use(), 1u << 20);
  auto over = p->TryAcquire(1);
  EXPECT_EQ(over.status().code(), StatusCode::kNoSpace);
  auto timed = p->Acquire(4096, milliseconds(20));
  EXPECT_EQ(timed.status().code(), StatusCode::kNoSpace);
  EXPECT_EQ(p->TryAcquire((1 << 20) + 1).status().code(), StatusCode::kInvalidArgument);

  // A waiter succeeds once another thread releases.
  std::thread releaser([&] {
    std::this_thread::sleep_for(milliseconds(50));
    held.pop_back();
  });
  auto waited = p->Acquire(200 * 1024, std::chrono::seconds(10));
  releaser.join();
  ASSERT_TRUE(waited.ok()) << waited.status().ToString();
  EXPECT_LE(p->in_use(), p->capacity());
  EXPECT_EQ(p->peak_in_use(), 1u << 20);

  // Released ranges coalesce: after everything is back, the whole capacity fits in one piece.
  held.clear();
  waited->Release();
  EXPECT_EQ(p->in_use(), 0u);
  auto whole = p->TryAcquire(1 << 20);
  EXPECT_TRUE(whole.ok()) << whole.status().ToString();
}

TEST(BufferPool, ConcurrentAcquireRelease) {
  auto pool = BufferPool::Create({.capacity_bytes = 2 << 20, .max_slab_bytes = 1 << 20});
  ASSERT_TRUE(pool.ok());
  auto& p = *pool;
  ASSERT_EQ(p->slabs().size(), 2u);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      std::vector<PoolBuffer> mine;
      for (int i = 0; i < 400; ++i) {
        if (!mine.empty() && (rng() % 2 == 0 || mine.size() > 3)) {
          mine.erase(mine.begin() + static_cast<long>(rng() % mine.size()));
          continue;
        }
        auto b = p->Acquire(4096 * (1 + rng() % 64), milliseconds(2));
        if (b.ok()) {
          std::memset(b->data(), t, b->size());  // ASan/TSan would see an overlap
          mine.push_back(std::move(b).value());
        } else if (b.status().code() != StatusCode::kNoSpace) {
          ++failures;
        }
        if (p->in_use() > p->capacity()) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_LE(p->peak_in_use(), p->capacity());
  EXPECT_EQ(p->in_use(), 0u);
}

TEST(BufferPool, HugePageAndSmallPageSlabs) {
  for (bool huge : {true, false}) {
    BufferPoolOptions o;
    o.capacity_bytes = (6 << 20) + 4096;
    o.huge_pages = huge;
    auto pool = BufferPool::Create(o);
    ASSERT_TRUE(pool.ok()) << pool.status().ToString();
    ASSERT_EQ((*pool)->slabs().size(), 1u);
    const auto base = reinterpret_cast<uintptr_t>((*pool)->slabs()[0].base);
    if (huge) {
      EXPECT_EQ(base % (2 << 20), 0u);
    }
    auto all = (*pool)->TryAcquire(o.capacity_bytes);
    ASSERT_TRUE(all.ok());
    std::memset(all->data(), 0xAB, all->size());  // every byte is mapped and writable
  }
}

TEST(BufferPool, BuffersOutliveThePoolHandle) {
  PoolBuffer b;
  {
    auto pool = BufferPool::Create({.capacity_bytes = 1 << 16});
    ASSERT_TRUE(pool.ok());
    auto got = (*pool)->TryAcquire(4096);
    ASSERT_TRUE(got.ok());
    b = std::move(got).value();
  }
  std::memset(b.data(), 1, b.size());  // the buffer keeps the pool (and its slab) alive
  b.Release();
  EXPECT_FALSE(b);
}

}  // namespace
}  // namespace ckv::io
