// The portable backend: a few worker threads calling pread(2).
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <system_error>
#include <thread>

#include "io/io_engine.h"

namespace ckv::io {
namespace {

// Reads the whole extent unless end of file or an error intervenes (see io_engine.h).
int32_t ReadFully(const ReadRequest& r) {
  auto* dst = static_cast<char*>(r.dst);
  uint32_t done = 0;
  while (done < r.length) {
    const ssize_t n =
        ::pread(r.fd, dst + done, r.length - done, static_cast<off_t>(r.offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return done > 0 ? static_cast<int32_t>(done) : -errno;
    }
    if (n == 0) break;  // end of file
    done += static_cast<uint32_t>(n);
  }
  return static_cast<int32_t>(done);
}

class ThreadPoolEngine final : public IoEngine {
 public:
  ThreadPoolEngine() = default;

  ~ThreadPoolEngine() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      queue_.clear();  // not started: dropped
    }
    work_cv_.notify_all();
    for (auto& t : workers_) t.join();  // waits for the preads in progress
  }

  Status Start(uint32_t threads) {
    workers_.reserve(threads);
    for (uint32_t i = 0; i < threads; ++i) {
      try {
        workers_.emplace_back([this] { WorkerLoop(); });
      } catch (const std::system_error& e) {
        // The destructor stops and joins the workers started so far.
        return Status::Internal(std::string("I/O thread pool: cannot start a worker thread: ") +
                                e.what());
      }
    }
    return Status::OK();
  }

  const char* name() const override { return "threads"; }

  Status RegisterBuffers(std::shared_ptr<BufferPool> pool) override {
    pool_ = std::move(pool);  // nothing to register: pread takes any address
    return Status::OK();
  }
  bool buffers_registered() const override { return false; }

  Status Submit(std::span<const ReadRequest> requests) override {
    for (const ReadRequest& r : requests) CKV_RETURN_IF_ERROR(ValidateReadRequest(r));
    if (requests.empty()) return Status::OK();
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.insert(queue_.end(), requests.begin(), requests.end());
      in_flight_ += requests.size();
    }
    if (requests.size() == 1) {
      work_cv_.notify_one();
    } else {
      work_cv_.notify_all();
    }
    return Status::OK();
  }

  Result<size_t> Reap(std::vector<ReadCompletion>& out, size_t min_complete,
                      std::chrono::microseconds timeout) override {
    std::unique_lock<std::mutex> lock(mu_);
    const size_t need = std::min(min_complete, in_flight_);
    auto enough = [&] { return done_.size() >= need; };
    if (!enough()) {
      if (timeout >= kForever) {
        done_cv_.wait(lock, enough);
      } else if (timeout.count() > 0) {
        done_cv_.wait_for(lock, timeout, enough);
      }
    }
    const size_t n = done_.size();
    out.insert(out.end(), done_.begin(), done_.end());
    done_.clear();
    in_flight_ -= n;
    return n;
  }

  size_t in_flight() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return in_flight_;
  }

 private:
  void WorkerLoop() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      work_cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      const ReadRequest r = queue_.front();
      queue_.pop_front();
      lock.unlock();
      const ReadCompletion c{r.tag, ReadFully(r)};
      lock.lock();
      done_.push_back(c);
      done_cv_.notify_one();
    }
  }

  mutable std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  std::deque<ReadRequest> queue_;
  std::vector<ReadCompletion> done_;
  size_t in_flight_ = 0;
  bool stop_ = false;
  std::vector<std::thread> workers_;
  std::shared_ptr<BufferPool> pool_;
};

}  // namespace

Result<std::unique_ptr<IoEngine>> CreateThreadPoolEngine(uint32_t threads) {
  auto engine = std::make_unique<ThreadPoolEngine>();
  CKV_RETURN_IF_ERROR(engine->Start(threads));
  return std::unique_ptr<IoEngine>(std::move(engine));
}

}  // namespace ckv::io
