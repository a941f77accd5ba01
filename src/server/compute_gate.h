// Keeps model compute apart between requests and background stores, with requests first: the
// store writer runs a piece of compute only while no request is queued or running, so storing
// delays a request by at most one piece (StoreContextOptions::piece_tokens).
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>

#include "ckv/status.h"

namespace ckv::server {

class ComputeGate {
 public:
  // A request is queued or running (from Submit until it finishes).
  void RequestPending() {
    std::lock_guard<std::mutex> lock(mu_);
    ++pending_;
  }
  void RequestDone() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      --pending_;
    }
    idle_.notify_all();
  }
  // The compute slot for a request (held for its whole Run).
  std::unique_lock<std::mutex> AcquireForRequest() {
    return std::unique_lock<std::mutex>(compute_);
  }
  // Runs a background piece once no request is pending; returns what `f` returns.
  Status RunBackgroundPiece(const std::function<Status()>& f) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      idle_.wait(lock, [&] { return pending_ == 0; });
    }
    std::lock_guard<std::mutex> slot(compute_);
    return f();
  }

 private:
  std::mutex mu_;
  std::condition_variable idle_;
  int pending_ = 0;
  std::mutex compute_;
};

}  // namespace ckv::server
