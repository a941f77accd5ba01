#include "server/engine_worker.h"

namespace ckv::server {

EngineWorker::EngineWorker(ReprefillEngine& engine, size_t max_queue, ComputeGate& gate,
                           Metrics& metrics)
    : engine_(engine), max_queue_(max_queue), gate_(gate), metrics_(metrics), thread_([this] {
        Loop();
      }) {}

EngineWorker::~EngineWorker() {
  Shutdown();
}

std::variant<std::future<GenerationOutcome>, EngineWorker::Refusal> EngineWorker::Submit(
    GenerationJob job) {
  auto entry = std::make_unique<Entry>();
  entry->job = std::move(job);
  entry->queued_at = std::chrono::steady_clock::now();
  auto future = entry->done.get_future();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return Refusal::kStopping;
    if (queue_.size() >= max_queue_) return Refusal::kQueueFull;
    gate_.RequestPending();  // Before the worker can see it: RequestDone must come after.
    queue_.push_back(std::move(entry));
    metrics_.requests_waiting = static_cast<int64_t>(queue_.size());
  }
  cv_.notify_all();
  return future;
}

void EngineWorker::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!thread_.joinable()) return;
    stopping_ = true;
    for (auto& e : queue_) e->job.cancelled->store(true);
    if (running_cancel_) running_cancel_->store(true);
  }
  cv_.notify_all();
  thread_.join();
}

void EngineWorker::Loop() {
  for (;;) {
    std::unique_ptr<Entry> entry;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return !queue_.empty() || stopping_; });
      if (queue_.empty()) return;
      entry = std::move(queue_.front());
      queue_.pop_front();
      running_cancel_ = entry->job.cancelled;
      metrics_.requests_waiting = static_cast<int64_t>(queue_.size());
    }
    GenerationOutcome out;
    out.queue_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() -
                                                             entry->queued_at)
                       .count();
    auto& job = entry->job;
    if (job.cancelled->load()) {
      out.cancelled = true;
      out.status = Status::OK();
    } else {
      metrics_.requests_running = 1;
      ReprefillOptions opts = job.options;
      auto cancelled = job.cancelled;
      auto user = job.on_token;
      opts.on_token = [cancelled, user](int32_t id) {
        if (cancelled->load()) return false;
        return user ? user(id) : true;
      };
      auto slot = gate_.AcquireForRequest();
      Result<ReprefillResult> res = Status::Internal("not run");
      try {
        res = engine_.Run(job.prompt, opts);
      } catch (const std::exception& e) {
        // bad_alloc for a huge context, say: that request fails, the server goes on.
        res = Status::Internal(std::string("exception: ") + e.what());
      }
      slot.unlock();
      metrics_.requests_running = 0;
      if (res.ok()) {
        out.result = std::move(res).value();
      } else {
        out.status = res.status();
      }
      out.cancelled = job.cancelled->load();
    }
    if (out.cancelled) metrics_.requests_cancelled += 1;
    {
      std::lock_guard<std::mutex> lock(mu_);
      out.server_stopping = out.cancelled && stopping_;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      running_cancel_.reset();
    }
    gate_.RequestDone();
    entry->done.set_value(std::move(out));
    if (job.on_done) job.on_done();
  }
}

}  // namespace ckv::server
