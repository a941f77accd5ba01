// Asynchronous positional reads: many small extents in flight at once.
//
// Threading: one thread at a time drives an engine (Submit, Reap, RegisterBuffers): the "I/O
// thread" of its owner. The engine has no thread affinity, so it may be created on one thread,
// driven by another and destroyed by a third, as long as those calls do not overlap. Destroying
// an engine waits for the reads the kernel (or a worker thread) is still executing, so the
// destination buffers may be freed right after; reads queued but not yet started are dropped
// without completions.
//
// Backends:
//   io_uring  liburing ring of `queue_depth` entries; at most queue_depth reads are in the
//             kernel, the rest wait in a user-space queue and are pushed as slots free up.
//             Reads whose destination lies in a registered BufferPool slab use
//             IORING_OP_READ_FIXED. No SQPOLL: the caller's thread does all submissions.
//   threads   `threads` workers calling pread(2); portable, for kernels or sandboxes without
//             io_uring.
// IoOptions::backend = kAuto picks io_uring when io_uring_queue_init succeeds, else threads;
// the environment variable CKV_IO_BACKEND=threads|uring overrides kAuto (not an explicit
// choice).
//
// Short reads are continued until the extent is complete, end of file (the read returns 0) or
// an error; a completion reports the bytes read (less than the length only at end of file, or
// when a continuation fails after some bytes arrived) or -errno when nothing was read.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ckv/status.h"
#include "io/aligned_buffer.h"

namespace ckv::io {

struct ReadRequest {
  int fd;
  uint64_t offset;
  uint32_t length;  // at most INT32_MAX
  void* dst;
  uint64_t tag;  // returned in the completion; the engine does not interpret it
};

struct ReadCompletion {
  uint64_t tag;
  int32_t result;  // bytes read, or -errno
};

enum class IoBackend { kAuto, kUring, kThreads };

// Reap timeouts this long (a year) or longer, microseconds::max() included, wait without limit.
inline constexpr std::chrono::microseconds kForever = std::chrono::hours(24 * 365);

struct IoOptions {
  IoBackend backend = IoBackend::kAuto;
  uint32_t queue_depth = 64;  // io_uring: reads in the kernel at once (1..4096)
  uint32_t threads = 8;       // threads backend: worker threads (1..256)
  // io_uring: new reads handed to the kernel per io_uring_enter. With N > 0 the first read of
  // a refill goes alone (the device starts on it at once) and the rest in groups of N; 0 hands
  // everything over in one call. Groups of 3 or more let the block layer merge adjacent reads
  // (plugging); smaller groups start the device sooner. 4 measured best on a virtio disk
  // (docs/BENCH_IO.md).
  uint32_t submit_batch = 4;
};

// "auto" | "uring" | "io_uring" | "threads".
Result<IoBackend> ParseIoBackend(const std::string& name);
const char* IoBackendName(IoBackend backend);

class IoEngine {
 public:
  static Result<std::unique_ptr<IoEngine>> Create(const IoOptions& options);
  virtual ~IoEngine() = default;
  IoEngine(const IoEngine&) = delete;
  IoEngine& operator=(const IoEngine&) = delete;

  // "io_uring" or "threads".
  virtual const char* name() const = 0;
  // Why kAuto did not choose io_uring (empty when it did, or when the backend was explicit).
  const std::string& fallback_reason() const { return fallback_reason_; }

  // Registers the pool's slabs as fixed buffers (io_uring; a no-op for threads). The engine
  // keeps the pool alive. Replaces an earlier registration. On failure (e.g. RLIMIT_MEMLOCK)
  // the engine keeps working with plain reads.
  virtual Status RegisterBuffers(std::shared_ptr<BufferPool> pool) = 0;
  // True when reads into `pool`'s slabs will use registered buffers.
  virtual bool buffers_registered() const = 0;

  // Queues the reads and starts as many as the queue depth allows. Either all are accepted or
  // none: a bad request is refused (kInvalidArgument, naming its tag) before any is queued,
  // and nothing else fails here. An accepted read ends as a completion from Reap, or with the
  // engine: if the engine itself fails (the kernel refuses a submission), Reap says so.
  virtual Status Submit(std::span<const ReadRequest> requests) = 0;

  // Appends completions to `out` until at least min(min_complete, in_flight()) have been
  // appended or `timeout` has passed (kForever or more waits without limit; 0 polls).
  // Returns the number appended; fewer than asked only on timeout. Errors of single reads come
  // back as negative results; a Status error means the engine itself failed: it is unusable,
  // and reads it accepted may still be writing their buffers until it is destroyed.
  virtual Result<size_t> Reap(std::vector<ReadCompletion>& out, size_t min_complete,
                              std::chrono::microseconds timeout) = 0;

  // Reads submitted and not yet reaped.
  virtual size_t in_flight() const = 0;

 protected:
  IoEngine() = default;
  std::string fallback_reason_;
};

// Backend factories (io_uring_engine.cpp, thread_pool_engine.cpp); use IoEngine::Create.
Result<std::unique_ptr<IoEngine>> CreateUringEngine(const IoOptions& options);
Result<std::unique_ptr<IoEngine>> CreateThreadPoolEngine(uint32_t threads);

// Shared request validation: kInvalidArgument naming the request, or OK.
Status ValidateReadRequest(const ReadRequest& r);

}  // namespace ckv::io
