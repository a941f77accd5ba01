#include "pipeline/unit_loader.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace ckv {

Result<std::unique_ptr<UnitLoader>> UnitLoader::Create(const LoaderOptions& opts, Tracer* tracer) {
  std::unique_ptr<UnitLoader> l(new UnitLoader());
  l->tracer_.store(tracer);
  l->opts_ = opts;
  if (!(opts.bandwidth_cap_bytes_per_s >= 0)) {  // NaN too
    return Status::InvalidArgument("I/O bandwidth cap must be >= 0 (0 = off)");
  }
  l->pacer_ = std::make_unique<IoPacer>(opts.bandwidth_cap_bytes_per_s);
  if (!l->opts_.make_engine) l->opts_.make_engine = io::IoEngine::Create;
  io::BufferPoolOptions po;
  po.capacity_bytes = std::max<size_t>(opts.buffer_bytes, io::kIoAlignment);
  po.prefault = false;
  CKV_ASSIGN_OR_RETURN(l->pool_, io::BufferPool::Create(po));
  CKV_RETURN_IF_ERROR(l->StartEngine());
  l->thread_ = std::thread([p = l.get()] { p->Run(); });
  return l;
}

Status UnitLoader::StartEngine() {
  auto engine = opts_.make_engine(opts_.io);
  if (!engine.ok()) {
    engine_status_ = engine.status();
    return engine_status_;
  }
  engine_ = std::move(engine).value();
  // Registration can fail (RLIMIT_MEMLOCK); plain reads still work, and requests say why.
  const Status reg = engine_->RegisterBuffers(pool_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    registration_error_ = reg.ok() ? "" : reg.ToString();
  }
  backend_.store(engine_->name(), std::memory_order_release);
  registered_.store(engine_->buffers_registered(), std::memory_order_release);
  return Status::OK();
}

void UnitLoader::ReplaceFailedEngine(const Status& why,
                                     std::map<uint64_t, std::shared_ptr<UnitSlot>>& in_flight) {
  // The failed engine may still be writing the buffers of the reads it held: they go back to
  // the pool only once it is destroyed (that waits for the kernel). Replaced before the slots
  // fail, so an owner that retries at once finds the buffers free and a working engine.
  std::vector<io::PoolBuffer> still_written;
  for (auto& [tag, s] : in_flight) still_written.push_back(std::move(s->buffer_));
  engine_.reset();
  still_written.clear();
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.engine_failures;
  }
  (void)StartEngine();  // on failure, later reads fail with engine_status_
  for (auto& [tag, s] : in_flight) {
    s->status_ = Status::Unavailable(s->label_ + ": I/O engine failed: " + why.message());
    Finish(*s, -EIO);
  }
  in_flight.clear();
}

UnitLoader::~UnitLoader() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void UnitLoader::Finish(UnitSlot& slot, int32_t result) {
  const std::byte* bytes = slot.data();
  if (!slot.status_.ok()) {
    // Already failed (submission error); keep that message.
  } else if (result < 0) {
    slot.status_ = Status::IOError(slot.label_ + ": read failed: " + std::strerror(-result));
  } else if (static_cast<uint32_t>(result) < slot.length_) {
    slot.status_ =
        Status::Corruption(slot.label_ + ": short read (" + std::to_string(result) + " of " +
                           std::to_string(slot.length_) + " bytes): file truncated");
  } else if (slot.verify_) {
    slot.status_ = slot.verify_(bytes);
  }
  Tracer* tracer = tracer_.load(std::memory_order_acquire);
  if (tracer != nullptr && tracer->enabled()) {
    tracer->Complete(Tracer::kIo, "read " + slot.label_, slot.submit_us_, tracer->NowUs(),
                     "{\"bytes\":" + std::to_string(slot.length_) + "}");
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (result > 0) {
      stats_.bytes_read += result;
      ++stats_.units_read;
    }
    slot.state_.store(UnitSlot::kDone, std::memory_order_release);
  }
  ready_cv_.notify_all();
}

std::shared_ptr<UnitSlot> UnitLoader::Load(int fd, uint64_t offset, uint32_t length,
                                           std::function<Status(const std::byte*)> verify,
                                           std::string label) {
  return Start(fd, offset, length, std::move(verify), std::move(label), true);
}

std::shared_ptr<UnitSlot> UnitLoader::TryLoad(int fd, uint64_t offset, uint32_t length,
                                              std::function<Status(const std::byte*)> verify,
                                              std::string label) {
  return Start(fd, offset, length, std::move(verify), std::move(label), false);
}

std::shared_ptr<UnitSlot> UnitLoader::Start(int fd, uint64_t offset, uint32_t length,
                                            std::function<Status(const std::byte*)> verify,
                                            std::string label, bool sync_when_full) {
  auto slot = std::make_shared<UnitSlot>();
  slot->fd_ = fd;
  slot->offset_ = offset;
  slot->length_ = length;
  slot->verify_ = std::move(verify);
  slot->label_ = std::move(label);
  Tracer* tracer = tracer_.load(std::memory_order_acquire);
  slot->submit_us_ = tracer != nullptr ? tracer->NowUs() : 0;
  auto buf = pool_->TryAcquire(length);
  if (buf.ok()) {
    slot->buffer_ = std::move(buf).value();
    {
      std::lock_guard<std::mutex> lock(mu_);
      pending_.push_back(slot);
    }
    work_cv_.notify_one();
    return slot;
  }
  if (!sync_when_full) return nullptr;
  // The pool is full: read synchronously into a separate aligned buffer (O_DIRECT stays
  // valid), so the pool's bound is never exceeded; counted as an overflow.
  auto heap = io::AlignedBuffer::Allocate(length);
  if (!heap.ok()) {
    slot->status_ = heap.status();
    Finish(*slot, -ENOMEM);
    return slot;
  }
  slot->heap_ = std::move(heap).value();
  ssize_t got = 0;
  while (got < static_cast<ssize_t>(length)) {
    const ssize_t r = pread(fd, slot->heap_.data() + got, length - got, offset + got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      got = got > 0 ? got : (r < 0 ? -errno : 0);
      break;
    }
    got += r;
  }
  if (pacer_->enabled()) {
    const auto due = pacer_->Reserve(length);
    const auto now = std::chrono::steady_clock::now();
    if (due > now) {
      std::this_thread::sleep_until(due);
      std::lock_guard<std::mutex> lock(mu_);
      stats_.paced_ms += std::chrono::duration<double, std::milli>(due - now).count();
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.pool_overflows;
  }
  Finish(*slot, static_cast<int32_t>(got));
  return slot;
}

Status UnitLoader::Wait(const UnitSlot& slot) {
  if (!slot.ready()) {
    std::unique_lock<std::mutex> lock(mu_);
    ready_cv_.wait(lock, [&] { return slot.ready(); });
  }
  return slot.status();
}

std::string UnitLoader::registration_error() const {
  std::lock_guard<std::mutex> lock(mu_);
  return registration_error_;
}

LoaderStats UnitLoader::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void UnitLoader::Run() {
  using SteadyTime = std::chrono::steady_clock::time_point;
  std::map<uint64_t, std::shared_ptr<UnitSlot>> in_flight;
  // Reads the device has completed that the bandwidth cap still holds back, by due time.
  std::multimap<SteadyTime, std::pair<std::shared_ptr<UnitSlot>, int32_t>> held;
  uint64_t next_tag = 1;
  std::vector<io::ReadRequest> batch;
  std::vector<io::ReadCompletion> done;
  for (;;) {
    std::deque<std::shared_ptr<UnitSlot>> incoming;
    bool stopping = false;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (pending_.empty() && in_flight.empty()) {
        const auto wake = [&] { return stop_ || !pending_.empty(); };
        if (held.empty()) {
          work_cv_.wait(lock, wake);
        } else {
          work_cv_.wait_until(lock, held.begin()->first, wake);
        }
      }
      stopping = stop_;
      if (stop_ && pending_.empty() && in_flight.empty() && held.empty()) return;
      incoming.swap(pending_);
    }
    // Completions whose emulated time has come (all of them when the loader stops).
    for (auto now = std::chrono::steady_clock::now();
         !held.empty() && (stopping || held.begin()->first <= now);) {
      auto node = held.extract(held.begin());
      Finish(*node.mapped().first, node.mapped().second);
    }
    if (!incoming.empty() && !engine_) {
      for (auto& s : incoming) {
        s->status_ =
            Status::Unavailable(s->label_ + ": no I/O engine: " + engine_status_.message());
        Finish(*s, -EIO);
      }
      incoming.clear();
    }
    if (!incoming.empty()) {
      batch.clear();
      for (auto& s : incoming) {
        batch.push_back({s->fd_, s->offset_, s->length_, s->buffer_.data(), next_tag++});
      }
      Status st = engine_->Submit(batch);
      if (st.ok()) {
        // Moved, not copied: a slot whose read completes in the Reap below must hold no
        // reference here once it is done, or its buffer would outlive the waiter's last
        // reference until this iteration ends, and a read issued meanwhile would find the pool
        // full (a synchronous read).
        for (size_t i = 0; i < batch.size(); ++i) {
          incoming[i]->due_ = pacer_->Reserve(incoming[i]->length_);
          in_flight.emplace(batch[i].tag, std::move(incoming[i]));
        }
      } else {
        // Refused as a whole (the interface's contract): no read of the batch started, so
        // their buffers are free.
        for (auto& s : incoming) {
          s->status_ = st;
          Finish(*s, -EIO);
        }
      }
    }
    if (in_flight.empty()) continue;
    done.clear();
    // Short timeout: new requests from the compute thread are picked up within it.
    auto reaped = engine_->Reap(done, 1, std::chrono::microseconds(100));
    if (!reaped.ok()) {
      ReplaceFailedEngine(reaped.status(), in_flight);
      continue;
    }
    const auto now = std::chrono::steady_clock::now();
    for (const auto& c : done) {
      auto it = in_flight.find(c.tag);
      if (it == in_flight.end()) continue;
      std::shared_ptr<UnitSlot> slot = std::move(it->second);
      in_flight.erase(it);
      if (slot->due_ > now) {
        {
          std::lock_guard<std::mutex> lock(mu_);
          stats_.paced_ms += std::chrono::duration<double, std::milli>(slot->due_ - now).count();
        }
        const SteadyTime due = slot->due_;
        held.emplace(due, std::make_pair(std::move(slot), c.result));
      } else {
        Finish(*slot, c.result);
      }
    }
  }
}

}  // namespace ckv
