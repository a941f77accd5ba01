// The I/O thread's error paths, with I/O engines that fail at chosen points: a failed engine
// never hands back a buffer a read may still write, the loader replaces it, and every failure
// reaches the slot that asked, with its label.
#include "pipeline/unit_loader.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <deque>
#include <fstream>

#include "test_util.h"

namespace ckv {
namespace {

constexpr uint32_t kUnit = 8192;

// A file of `units` units, unit u filled with the byte u + 1.
std::string MakeFile(int units) {
  const std::string path = test::MakeTempDir("unit-loader") + "/data";
  std::ofstream out(path, std::ios::binary);
  for (int u = 0; u < units; ++u) out << std::string(kUnit, static_cast<char>(u + 1));
  return path;
}

// Checks that a unit holds byte u + 1 throughout (the verify callback).
std::function<Status(const std::byte*)> Holds(int u) {
  return [u](const std::byte* b) {
    for (uint32_t i = 0; i < kUnit; ++i) {
      if (b[i] != static_cast<std::byte>(u + 1)) {
        return Status::Corruption("unit " + std::to_string(u) + " byte " + std::to_string(i));
      }
    }
    return Status::OK();
  };
}

// Reads synchronously on Reap. Can fail Reap (the engine breaks) or refuse a Submit at chosen
// calls. A broken engine behaves like a kernel that still owns the reads it was given: it
// writes their buffers later (0xEE), at its next call or, at the latest, when destroyed.
class FaultyEngine : public io::IoEngine {
 public:
  struct Plan {
    int fail_reap_at = -1;      // this Reap call (0-based) fails
    int refuse_submit_at = -1;  // this Submit call is refused as a whole
  };
  struct Shared {
    int engines_made = 0;
    int late_writes = 0;
  };
  FaultyEngine(Plan plan, Shared* shared) : plan_(plan), shared_(shared) {}
  ~FaultyEngine() override { WriteLate(); }

  const char* name() const override { return "faulty"; }
  Status RegisterBuffers(std::shared_ptr<io::BufferPool>) override { return Status::OK(); }
  bool buffers_registered() const override { return false; }

  Status Submit(std::span<const io::ReadRequest> requests) override {
    WriteLate();
    if (submits_++ == plan_.refuse_submit_at) {
      return Status::InvalidArgument("refused by the test engine");
    }
    queue_.insert(queue_.end(), requests.begin(), requests.end());
    return Status::OK();
  }

  Result<size_t> Reap(std::vector<io::ReadCompletion>& out, size_t,
                      std::chrono::microseconds) override {
    if (broken_) {
      WriteLate();
      return Status::IOError("test engine is broken");
    }
    if (reaps_++ == plan_.fail_reap_at) {
      // The reads stay "in the kernel": written later.
      broken_ = true;
      lost_.insert(lost_.end(), queue_.begin(), queue_.end());
      queue_.clear();
      return Status::IOError("test engine failed");
    }
    size_t n = 0;
    while (!queue_.empty()) {
      const io::ReadRequest r = queue_.front();
      queue_.pop_front();
      const ssize_t got = pread(r.fd, r.dst, r.length, static_cast<off_t>(r.offset));
      out.push_back({r.tag, got < 0 ? -errno : static_cast<int32_t>(got)});
      ++n;
    }
    // A lost read of an earlier failure that lands now, after other reads completed.
    WriteLate();
    return n;
  }

  size_t in_flight() const override { return queue_.size(); }

 private:
  void WriteLate() {
    for (const io::ReadRequest& r : lost_) {
      std::memset(r.dst, 0xEE, r.length);
      ++shared_->late_writes;
    }
    lost_.clear();
  }

  Plan plan_;
  Shared* shared_;
  int submits_ = 0, reaps_ = 0;
  bool broken_ = false;
  std::deque<io::ReadRequest> queue_;
  std::vector<io::ReadRequest> lost_;
};

std::unique_ptr<UnitLoader> MakeLoader(FaultyEngine::Plan first, FaultyEngine::Shared* shared,
                                       size_t pool_bytes, bool replacements_fail = false) {
  LoaderOptions lo;
  lo.buffer_bytes = pool_bytes;
  lo.make_engine = [first, shared, replacements_fail](
                       const io::IoOptions&) -> Result<std::unique_ptr<io::IoEngine>> {
    const bool is_first = shared->engines_made++ == 0;
    if (!is_first && replacements_fail) return Status::IOError("no engine today");
    return std::unique_ptr<io::IoEngine>(
        new FaultyEngine(is_first ? first : FaultyEngine::Plan{}, shared));
  };
  auto l = UnitLoader::Create(lo, nullptr);
  EXPECT_TRUE(l.ok()) << l.status().ToString();
  return l.ok() ? std::move(l).value() : nullptr;
}

TEST(UnitLoader, ReadsAndVerifiesOnTheIoThread) {
  const std::string path = MakeFile(4);
  const int fd = open(path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  FaultyEngine::Shared shared;
  auto loader = MakeLoader({}, &shared, 4 * kUnit);
  std::vector<std::shared_ptr<UnitSlot>> slots;
  for (int u = 0; u < 4; ++u) slots.push_back(loader->Load(fd, u * kUnit, kUnit, Holds(u), "u"));
  for (auto& s : slots) EXPECT_TRUE(loader->Wait(*s).ok()) << s->status().ToString();
  EXPECT_EQ(loader->stats().units_read, 4);
  close(fd);
}

TEST(UnitLoader, AShortReadIsCorruptionNamingTheUnit) {
  const std::string path = MakeFile(1);
  const int fd = open(path.c_str(), O_RDONLY);
  FaultyEngine::Shared shared;
  auto loader = MakeLoader({}, &shared, 4 * kUnit);
  auto slot = loader->Load(fd, kUnit / 2, kUnit, nullptr, "P3 c7");
  const Status st = loader->Wait(*slot);
  EXPECT_EQ(st.code(), StatusCode::kCorruption) << st.ToString();
  EXPECT_NE(st.message().find("P3 c7"), std::string::npos) << st.ToString();
  EXPECT_NE(st.message().find("short read"), std::string::npos) << st.ToString();
  close(fd);
}

// The engine fails while a read is in the kernel. With a pool of exactly one unit, the next
// read gets the same buffer: it must not get it before the failed engine is gone, or the lost
// read lands in the next unit's data.
TEST(UnitLoader, AFailedEngineNeverHandsBackABufferItMayStillWrite) {
  const std::string path = MakeFile(3);
  const int fd = open(path.c_str(), O_RDONLY);
  FaultyEngine::Shared shared;
  auto loader = MakeLoader({.fail_reap_at = 0}, &shared, kUnit);
  auto lost = loader->Load(fd, 0, kUnit, Holds(0), "lost unit");
  const Status st = loader->Wait(*lost);
  EXPECT_EQ(st.code(), StatusCode::kUnavailable) << st.ToString();
  EXPECT_NE(st.message().find("lost unit"), std::string::npos) << st.ToString();
  EXPECT_NE(st.message().find("I/O engine failed"), std::string::npos) << st.ToString();
  lost.reset();  // the owner gives up the failed slot at once
  for (int u = 1; u < 3; ++u) {
    // The I/O thread drops its reference to a finished slot just after waking the owner.
    for (int i = 0; i < 1000 && loader->pool().in_use() > 0; ++i) usleep(1000);
    auto next = loader->Load(fd, u * kUnit, kUnit, Holds(u), "next unit");
    EXPECT_TRUE(loader->Wait(*next).ok()) << next->status().ToString();
  }
  EXPECT_EQ(shared.late_writes, 1);   // the lost read did land, in its own buffer
  EXPECT_EQ(shared.engines_made, 2);  // replaced once
  EXPECT_EQ(loader->stats().engine_failures, 1);
  EXPECT_EQ(loader->stats().pool_overflows, 0);
  close(fd);
}

TEST(UnitLoader, ARefusedBatchFailsItsSlotsAndTheNextOneIsRead) {
  const std::string path = MakeFile(2);
  const int fd = open(path.c_str(), O_RDONLY);
  FaultyEngine::Shared shared;
  auto loader = MakeLoader({.refuse_submit_at = 0}, &shared, 2 * kUnit);
  auto refused = loader->Load(fd, 0, kUnit, Holds(0), "refused");
  EXPECT_EQ(loader->Wait(*refused).code(), StatusCode::kInvalidArgument);
  auto next = loader->Load(fd, kUnit, kUnit, Holds(1), "next");
  EXPECT_TRUE(loader->Wait(*next).ok()) << next->status().ToString();
  EXPECT_EQ(shared.engines_made, 1);  // a refusal is not an engine failure
  close(fd);
}

TEST(UnitLoader, WithoutAReplacementEngineLaterReadsFailClearly) {
  const std::string path = MakeFile(2);
  const int fd = open(path.c_str(), O_RDONLY);
  FaultyEngine::Shared shared;
  auto loader = MakeLoader({.fail_reap_at = 0}, &shared, 2 * kUnit, /*replacements_fail=*/true);
  auto first = loader->Load(fd, 0, kUnit, Holds(0), "first");
  EXPECT_EQ(loader->Wait(*first).code(), StatusCode::kUnavailable);
  auto later = loader->Load(fd, kUnit, kUnit, Holds(1), "later");
  const Status st = loader->Wait(*later);
  EXPECT_EQ(st.code(), StatusCode::kUnavailable) << st.ToString();
  EXPECT_NE(st.message().find("no engine today"), std::string::npos) << st.ToString();
  close(fd);
}

// The emulated device serves reads in order at its rate: each reservation ends bytes / rate
// after the previous one (or after now, when the device was idle).
TEST(IoPacer, ReadsQueueBehindEachOtherAtTheCappedRate) {
  IoPacer off(0);
  EXPECT_FALSE(off.enabled());
  IoPacer pacer(1e6);  // 1 MB/s: 1,000 bytes take 1 ms
  const auto t0 = IoPacer::Clock::now();
  const auto a = pacer.Reserve(1000);
  const auto b = pacer.Reserve(3000);
  EXPECT_GE(a - t0, std::chrono::microseconds(1000));
  EXPECT_EQ(std::chrono::duration_cast<std::chrono::microseconds>(b - a).count(), 3000);
}

// With a cap, a read's completion is held back until a device of that bandwidth would have
// finished it: 64 KiB at 1 MB/s takes at least 65 ms however fast the disk is.
TEST(UnitLoader, TheBandwidthCapHoldsCompletionsBack) {
  const std::string path = MakeFile(8);
  const int fd = open(path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  LoaderOptions lo;
  lo.buffer_bytes = 8 * kUnit;
  lo.bandwidth_cap_bytes_per_s = 1e6;
  auto loader = UnitLoader::Create(lo, nullptr);
  ASSERT_TRUE(loader.ok()) << loader.status().ToString();
  EXPECT_DOUBLE_EQ((*loader)->bandwidth_cap_bytes_per_s(), 1e6);
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::shared_ptr<UnitSlot>> slots;
  for (int u = 0; u < 8; ++u) slots.push_back((*loader)->Load(fd, u * kUnit, kUnit, Holds(u), "u"));
  for (auto& s : slots) EXPECT_TRUE((*loader)->Wait(*s).ok()) << s->status().ToString();
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_GE(ms, 65.0);
  EXPECT_GT((*loader)->stats().paced_ms, 0.0);
  // A negative cap is refused.
  lo.bandwidth_cap_bytes_per_s = -1;
  EXPECT_EQ(UnitLoader::Create(lo, nullptr).status().code(), StatusCode::kInvalidArgument);
  close(fd);
}

}  // namespace
}  // namespace ckv
