// Loads read units of stored prefixes on a dedicated I/O thread, so I/O runs beside compute:
// the compute thread asks for units (non-blocking), keeps computing, and waits only for the
// units a layer needs. Buffers come from a bounded pool registered with io_uring; each loaded
// unit is checksum-verified on the I/O thread before it is marked ready.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "ckv/status.h"
#include "io/aligned_buffer.h"
#include "io/io_engine.h"
#include "pipeline/io_pacer.h"
#include "pipeline/trace.h"

namespace ckv {

struct LoaderOptions {
  io::IoOptions io;
  size_t buffer_bytes = size_t{256} << 20;  // bound on unit buffers held at once
  // Emulated device bandwidth for the I/O-bound regime (IoPacer): reads complete no sooner
  // than a device of this many bytes per second would finish them. 0 = off (the real disk).
  double bandwidth_cap_bytes_per_s = 0;
  // Makes the I/O engine (at start, and again after one fails). Default io::IoEngine::Create;
  // tests pass engines that fail at chosen points.
  std::function<Result<std::unique_ptr<io::IoEngine>>(const io::IoOptions&)> make_engine;
};

// One unit being loaded (or loaded). Shared between the compute thread and the I/O thread.
class UnitSlot {
 public:
  const std::byte* data() const { return buffer_ ? buffer_.data() : heap_.data(); }
  size_t size() const { return length_; }
  bool ready() const { return state_.load(std::memory_order_acquire) != kPending; }
  // Result of the read + verification (valid once ready()).
  const Status& status() const { return status_; }

 private:
  friend class UnitLoader;
  enum State { kPending, kDone };
  io::PoolBuffer buffer_;
  io::AlignedBuffer heap_;  // used when the pool was full (synchronous path)
  int fd_ = -1;
  uint64_t offset_ = 0;
  uint32_t length_ = 0;
  std::function<Status(const std::byte*)> verify_;
  std::atomic<int> state_{kPending};
  Status status_;
  double submit_us_ = 0;
  std::string label_;
  std::chrono::steady_clock::time_point due_{};  // emulated completion (bandwidth cap)
};

struct LoaderStats {
  int64_t bytes_read = 0;
  int64_t units_read = 0;
  int64_t pool_overflows = 0;   // units read synchronously because the buffer pool was full
  int64_t engine_failures = 0;  // I/O engines that failed and were replaced
  double paced_ms = 0;          // completions held back by the bandwidth cap (summed)
};

class UnitLoader {
 public:
  static Result<std::unique_ptr<UnitLoader>> Create(const LoaderOptions& opts, Tracer* tracer);
  ~UnitLoader();
  UnitLoader(const UnitLoader&) = delete;
  UnitLoader& operator=(const UnitLoader&) = delete;

  // Starts reading [offset, offset + length) of fd; `verify` checks the bytes once read.
  // When the buffer pool is full the read is done synchronously here (never exceeding the
  // bound); the slot is then ready on return.
  std::shared_ptr<UnitSlot> Load(int fd, uint64_t offset, uint32_t length,
                                 std::function<Status(const std::byte*)> verify, std::string label);
  // Like Load, but returns nullptr instead of reading synchronously when the pool is full
  // (for speculative reads, which must never block compute).
  std::shared_ptr<UnitSlot> TryLoad(int fd, uint64_t offset, uint32_t length,
                                    std::function<Status(const std::byte*)> verify,
                                    std::string label);
  // Blocks until the slot is ready; returns its status.
  Status Wait(const UnitSlot& slot);

  LoaderStats stats() const;
  // Where read events go (nullptr: nowhere). Set between requests.
  void set_tracer(Tracer* tracer) { tracer_.store(tracer, std::memory_order_release); }
  const char* backend() const { return backend_.load(std::memory_order_acquire); }
  bool buffers_registered() const { return registered_.load(std::memory_order_acquire); }
  // Why the engine could not register the pool's buffers (empty when it did or has none to
  // register, as the threads backend).
  std::string registration_error() const;
  const io::BufferPool& pool() const { return *pool_; }
  double bandwidth_cap_bytes_per_s() const { return pacer_->bytes_per_second(); }

 private:
  UnitLoader() = default;
  void Run();
  void Finish(UnitSlot& slot, int32_t result);
  // (Re)creates and sets up the engine (I/O thread, or before it starts).
  Status StartEngine();
  // The engine failed: replaces it, then fails every read it held. Buffers of those reads go
  // back to the pool only once the old engine is destroyed (it waits for the kernel), never
  // while a read may still write them.
  void ReplaceFailedEngine(const Status& why,
                           std::map<uint64_t, std::shared_ptr<UnitSlot>>& in_flight);
  std::shared_ptr<UnitSlot> Start(int fd, uint64_t offset, uint32_t length,
                                  std::function<Status(const std::byte*)> verify, std::string label,
                                  bool sync_when_full);

  LoaderOptions opts_;
  // Driven by the I/O thread only (after Create); null when a replacement could not be made.
  std::unique_ptr<io::IoEngine> engine_;
  Status engine_status_;            // why engine_ is null
  std::string registration_error_;  // guarded by mu_
  std::atomic<const char*> backend_{"none"};
  std::atomic<bool> registered_{false};
  std::shared_ptr<io::BufferPool> pool_;
  std::unique_ptr<IoPacer> pacer_;
  std::atomic<Tracer*> tracer_{nullptr};
  std::thread thread_;
  mutable std::mutex mu_;
  std::condition_variable work_cv_;   // I/O thread: new requests or stop
  std::condition_variable ready_cv_;  // compute thread: a slot became ready
  std::deque<std::shared_ptr<UnitSlot>> pending_;
  bool stop_ = false;
  LoaderStats stats_;
};

}  // namespace ckv
