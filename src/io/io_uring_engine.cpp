// The io_uring backend (liburing). See io_engine.h for the contract.
//
// Reads wait in `pending_` until a slot is free; a slot is one read in the kernel (at most
// queue_depth of them, so the completion ring, twice the submission ring, never overflows).
// Submit moves pending reads into free slots and hands them to the kernel (the first alone,
// then in groups of IoOptions::submit_batch); Reap drains completions in batches
// (io_uring_peek_batch_cqe), refills the freed slots and only then waits, submitting the last
// partial group with the same system call (io_uring_submit_and_wait_timeout). Ring flags:
// COOP_TASKRUN (completions run when this thread enters the kernel, which it does to wait; no
// interrupting IPIs), not SINGLE_ISSUER/DEFER_TASKRUN, which would tie the ring to the thread
// that created it.
#include <liburing.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <deque>
#include <string>

#include "io/io_engine.h"

namespace ckv::io {
namespace {

std::string Errno(int err) {
  return std::strerror(err);
}

class UringEngine final : public IoEngine {
 public:
  UringEngine() = default;

  ~UringEngine() override {
    if (!ring_ok_) return;
    // The kernel may still write into the destination buffers: wait for every read it holds.
    pending_.clear();
    std::vector<ReadCompletion> discard;
    while (busy_ > 0) {
      __kernel_timespec ts{1, 0};
      io_uring_cqe* cqe = nullptr;
      const int ret = io_uring_submit_and_wait_timeout(&ring_, &cqe, busy_, &ts, nullptr);
      if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) break;
      io_uring_cqe* cqes[64];
      unsigned n;
      while ((n = io_uring_peek_batch_cqe(&ring_, cqes, 64)) > 0) {
        for (unsigned i = 0; i < n; ++i) {
          const uint64_t slot = io_uring_cqe_get_data64(cqes[i]);
          if (slot < ops_.size() && ops_[slot].busy) {
            ops_[slot].busy = false;
            --busy_;
          }
        }
        io_uring_cq_advance(&ring_, n);
      }
    }
    io_uring_queue_exit(&ring_);
  }

  Status Init(uint32_t queue_depth, uint32_t submit_batch) {
    submit_batch_ = submit_batch == 0 ? UINT32_MAX : submit_batch;
    // Completions are handled when this thread enters the kernel (it always does to wait),
    // so the kernel need not interrupt it; older kernels refuse the flags: retry without.
    io_uring_params p{};
    p.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
    int ret = io_uring_queue_init_params(queue_depth, &ring_, &p);
    if (ret == -EINVAL) {
      p = io_uring_params{};
      ret = io_uring_queue_init_params(queue_depth, &ring_, &p);
    }
    if (ret < 0)
      return Status::Unsupported("io_uring_queue_init (depth " + std::to_string(queue_depth) +
                                 "): " + Errno(-ret));
    ring_ok_ = true;
    ops_.resize(queue_depth);
    free_slots_.reserve(queue_depth);
    for (uint32_t i = queue_depth; i > 0; --i) free_slots_.push_back(i - 1);
    return Status::OK();
  }

  const char* name() const override { return "io_uring"; }

  Status RegisterBuffers(std::shared_ptr<BufferPool> pool) override {
    if (in_flight_ > 0)
      return Status::InvalidArgument("io_uring_register_buffers: " + std::to_string(in_flight_) +
                                     " reads in flight");
    if (registered_) {
      io_uring_unregister_buffers(&ring_);
      registered_ = false;
    }
    pool_ = std::move(pool);
    if (!pool_) return Status::OK();
    std::vector<iovec> iov;
    size_t total = 0;
    for (const BufferPool::Slab& s : pool_->slabs()) {
      iov.push_back({s.base, s.bytes});
      total += s.bytes;
    }
    const int ret =
        io_uring_register_buffers(&ring_, iov.data(), static_cast<unsigned>(iov.size()));
    if (ret < 0) {
      std::string msg = "io_uring_register_buffers (" + std::to_string(iov.size()) + " slabs, " +
                        std::to_string(total) + " bytes): " + Errno(-ret);
      if (ret == -ENOMEM || ret == -EPERM) msg += " (RLIMIT_MEMLOCK too low?)";
      return Status::IOError(msg + "; reads use plain IORING_OP_READ");
    }
    registered_ = true;
    return Status::OK();
  }

  bool buffers_registered() const override { return registered_; }

  Status Submit(std::span<const ReadRequest> requests) override {
    for (const ReadRequest& r : requests) CKV_RETURN_IF_ERROR(ValidateReadRequest(r));
    pending_.insert(pending_.end(), requests.begin(), requests.end());
    in_flight_ += requests.size();
    // Accepted: some may already be in the kernel, so a failure to hand over the rest cannot
    // un-accept them. It is the engine's failure, reported by Reap (the interface's contract).
    if (failed_.ok()) {
      Status st = FillSlots();
      if (st.ok()) st = Flush();
      failed_ = st;
    }
    return Status::OK();
  }

  Result<size_t> Reap(std::vector<ReadCompletion>& out, size_t min_complete,
                      std::chrono::microseconds timeout) override {
    using Clock = std::chrono::steady_clock;
    CKV_RETURN_IF_ERROR(failed_);
    const bool forever = timeout >= kForever;
    const auto deadline = forever ? Clock::time_point::max() : Clock::now() + timeout;
    const size_t need = std::min(min_complete, in_flight_);
    size_t got = 0;
    for (;;) {
      CKV_ASSIGN_OR_RETURN(const size_t n, Drain(out));
      got += n;
      if (got >= need) break;
      __kernel_timespec ts{};
      __kernel_timespec* tsp = nullptr;
      if (!forever) {
        const auto left =
            std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - Clock::now());
        if (left.count() <= 0) break;
        ts.tv_sec = left.count() / 1000000000;
        ts.tv_nsec = left.count() % 1000000000;
        tsp = &ts;
      }
      // need > got implies reads are outstanding, and Drain refilled the free slots.
      if (busy_ == 0) return Status::Internal("io_uring: reads queued but none in the kernel");
      const unsigned wait_nr = static_cast<unsigned>(std::min<size_t>(need - got, busy_));
      io_uring_cqe* cqe = nullptr;
      const int ret = io_uring_submit_and_wait_timeout(&ring_, &cqe, wait_nr, tsp, nullptr);
      if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
        return Status::IOError("io_uring_submit_and_wait_timeout: " + Errno(-ret));
    }
    CKV_RETURN_IF_ERROR(Flush());
    return got;
  }

  size_t in_flight() const override { return in_flight_; }

 private:
  struct Op {
    ReadRequest req;
    uint32_t done;  // bytes already read
    int buf_index;  // registered buffer, or -1
    bool busy;
  };

  // Moves pending reads into free slots while the submission ring has room. Unless
  // submit_batch_ is unlimited, the first read goes to the kernel alone (the device starts on
  // it at once) and the rest every submit_batch_ reads; the last partial batch stays in the
  // ring for the caller's Flush (or the wait of Reap, which submits it with the same system
  // call).
  Status FillSlots() {
    bool first = submit_batch_ != UINT32_MAX;
    while (!pending_.empty() && !free_slots_.empty()) {
      if (io_uring_sq_ready(&ring_) >= (first ? 1u : submit_batch_)) {
        first = false;
        CKV_RETURN_IF_ERROR(Flush());
      }
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
      if (sqe == nullptr) return Status::OK();
      const uint32_t slot = free_slots_.back();
      free_slots_.pop_back();
      Op& op = ops_[slot];
      op.req = pending_.front();
      pending_.pop_front();
      op.done = 0;
      op.buf_index = registered_ ? pool_->SlabOf(op.req.dst, op.req.length) : -1;
      op.busy = true;
      ++busy_;
      Prep(sqe, slot);
    }
    return Status::OK();
  }

  void Prep(io_uring_sqe* sqe, uint32_t slot) {
    const Op& op = ops_[slot];
    char* addr = static_cast<char*>(op.req.dst) + op.done;
    const unsigned len = op.req.length - op.done;
    const uint64_t off = op.req.offset + op.done;
    if (op.buf_index >= 0) {
      io_uring_prep_read_fixed(sqe, op.req.fd, addr, len, off, op.buf_index);
    } else {
      io_uring_prep_read(sqe, op.req.fd, addr, len, off);
    }
    io_uring_sqe_set_data64(sqe, slot);
  }

  // Hands prepared submissions to the kernel. A full kernel queue (EAGAIN/EBUSY) is not an
  // error: the entries stay in the ring and go with the next call.
  Status Flush() {
    if (io_uring_sq_ready(&ring_) == 0) return Status::OK();
    int ret;
    do {
      ret = io_uring_submit(&ring_);
    } while (ret == -EINTR);
    if (ret < 0 && ret != -EAGAIN && ret != -EBUSY)
      return Status::IOError("io_uring_submit: " + Errno(-ret));
    return Status::OK();
  }

  void Complete(uint32_t slot, int32_t result, std::vector<ReadCompletion>& out) {
    Op& op = ops_[slot];
    out.push_back({op.req.tag, result});
    op.busy = false;
    --busy_;
    --in_flight_;
    free_slots_.push_back(slot);
  }

  // Handles every completion available now; continues short reads; refills free slots.
  Result<size_t> Drain(std::vector<ReadCompletion>& out) {
    size_t completed = 0;
    io_uring_cqe* cqes[64];
    unsigned n;
    while ((n = io_uring_peek_batch_cqe(&ring_, cqes, 64)) > 0) {
      for (unsigned i = 0; i < n; ++i) {
        const uint64_t slot64 = io_uring_cqe_get_data64(cqes[i]);
        if (slot64 >= ops_.size() || !ops_[slot64].busy) {
          io_uring_cq_advance(&ring_, n);
          return Status::Internal("io_uring: completion for unknown slot " +
                                  std::to_string(slot64));
        }
        const uint32_t slot = static_cast<uint32_t>(slot64);
        Op& op = ops_[slot];
        const int res = cqes[i]->res;
        bool again = false;
        if (res == -EAGAIN || res == -EINTR) {
          again = true;
        } else if (res < 0) {
          Complete(slot, op.done > 0 ? static_cast<int32_t>(op.done) : res, out);
          ++completed;
        } else if (res == 0) {
          Complete(slot, static_cast<int32_t>(op.done), out);  // end of file
          ++completed;
        } else {
          op.done += static_cast<uint32_t>(res);
          again = op.done < op.req.length;  // short read: continue with the remainder
          if (!again) {
            Complete(slot, static_cast<int32_t>(op.done), out);
            ++completed;
          }
        }
        if (again) {
          io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
          if (sqe == nullptr) {
            CKV_RETURN_IF_ERROR(Flush());
            sqe = io_uring_get_sqe(&ring_);
          }
          if (sqe == nullptr) {
            Complete(slot, op.done > 0 ? static_cast<int32_t>(op.done) : -EAGAIN, out);
            ++completed;
          } else {
            Prep(sqe, slot);
          }
        }
      }
      io_uring_cq_advance(&ring_, n);
    }
    CKV_RETURN_IF_ERROR(FillSlots());
    return completed;
  }

  io_uring ring_{};
  bool ring_ok_ = false;
  std::vector<Op> ops_;
  std::vector<uint32_t> free_slots_;
  std::deque<ReadRequest> pending_;
  uint32_t submit_batch_ = UINT32_MAX;
  size_t busy_ = 0;       // slots holding a read (in the ring or the kernel)
  size_t in_flight_ = 0;  // submitted and not yet reaped: pending_ + busy_
  std::shared_ptr<BufferPool> pool_;
  bool registered_ = false;
  Status failed_;  // a submission the kernel refused: the engine is unusable
};

}  // namespace

Result<std::unique_ptr<IoEngine>> CreateUringEngine(const IoOptions& options) {
  auto engine = std::make_unique<UringEngine>();
  CKV_RETURN_IF_ERROR(engine->Init(options.queue_depth, options.submit_batch));
  return std::unique_ptr<IoEngine>(std::move(engine));
}

}  // namespace ckv::io
