#include "server/compute_gate.h"

#include <algorithm>
#include <exception>
#include <utility>

namespace ckv::server {

ComputeGate::ComputeGate(double background_share)
    : share_(background_share), thread_([this] { ComputeLoop(); }) {}

ComputeGate::~ComputeGate() {
  {
    std::lock_guard<std::mutex> lock(task_mu_);
    stop_ = true;
  }
  task_cv_.notify_all();
  thread_.join();
}

void ComputeGate::RequestPending() {
  std::lock_guard<std::mutex> lock(mu_);
  ++pending_;
}

void ComputeGate::RequestDone() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    --pending_;
  }
  idle_.notify_all();
}

Status ComputeGate::RunForRequest(const std::function<Status()>& f) {
  {
    std::unique_lock<std::mutex> lock(mu_);
    turn_.wait(lock, [&] { return !background_turn_; });
  }
  return RunOnComputeThread(f);
}

Status ComputeGate::RunBackgroundPiece(const std::function<Status()>& f) {
  using Clock = std::chrono::steady_clock;
  {
    std::unique_lock<std::mutex> lock(mu_);
    auto idle = [&] { return pending_ == 0; };
    if (share_ <= 0) {
      idle_.wait(lock, idle);
    } else {
      // A piece that took d is followed by at least d (1 - s) / s of request compute, and
      // never sooner than kMinWait after it asked (requests keep the machine most of the time).
      const auto due = std::max(Clock::now() + kMinWait,
                                last_end_ + std::chrono::duration_cast<Clock::duration>(
                                                last_duration_ * ((1 - share_) / share_)));
      if (!idle_.wait_until(lock, due, idle)) background_turn_ = true;
    }
  }
  const auto start = Clock::now();
  std::exception_ptr error;
  Status st;
  try {
    st = RunOnComputeThread(f);
  } catch (...) {
    error = std::current_exception();
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    background_turn_ = false;
    last_end_ = Clock::now();
    last_duration_ = last_end_ - start;
  }
  turn_.notify_all();
  if (error) std::rethrow_exception(error);
  return st;
}

Status ComputeGate::RunOnComputeThread(const std::function<Status()>& f) {
  std::lock_guard<std::mutex> slot(compute_);
  std::unique_lock<std::mutex> lock(task_mu_);
  task_ = &f;
  task_done_ = false;
  task_cv_.notify_all();
  task_cv_.wait(lock, [&] { return task_done_; });
  task_ = nullptr;
  if (task_error_) std::rethrow_exception(std::exchange(task_error_, nullptr));
  return std::move(task_status_);
}

void ComputeGate::ComputeLoop() {
  std::unique_lock<std::mutex> lock(task_mu_);
  for (;;) {
    task_cv_.wait(lock, [&] { return stop_ || (task_ != nullptr && !task_done_); });
    if (task_ == nullptr || task_done_) return;  // stopping, nothing handed over
    const std::function<Status()>* f = task_;
    lock.unlock();
    Status st;
    std::exception_ptr error;
    try {
      st = (*f)();
    } catch (...) {
      error = std::current_exception();
    }
    lock.lock();
    task_status_ = std::move(st);
    task_error_ = error;
    task_done_ = true;
    task_cv_.notify_all();
  }
}

}  // namespace ckv::server
