// Keeps model compute apart between requests and background stores, with requests first: a
// store runs a piece of compute while no request is queued or running, or, under a load that
// never pauses, once it has waited long enough for its share of the compute (without which the
// prefixes that make the next turns cheap would never be stored while users keep arriving).
// Storing delays a request by at most one piece (StoreContextOptions::piece_tokens) at a time.
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>

#include "ckv/status.h"

namespace ckv::server {

class ComputeGate {
 public:
  // `background_share` in [0, 1): the fraction of compute time background pieces may take
  // under constant load (0: only when no request is pending).
  explicit ComputeGate(double background_share = 0) : share_(background_share) {}

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
  // The compute slot for a step of requests; waits while a background piece has its turn.
  std::unique_lock<std::mutex> AcquireForRequest() {
    {
      std::unique_lock<std::mutex> lock(mu_);
      turn_.wait(lock, [&] { return !background_turn_; });
    }
    return std::unique_lock<std::mutex>(compute_);
  }
  // Runs a background piece once no request is pending, or once its share is due; returns
  // what `f` returns.
  Status RunBackgroundPiece(const std::function<Status()>& f) {
    using Clock = std::chrono::steady_clock;
    {
      std::unique_lock<std::mutex> lock(mu_);
      auto idle = [&] { return pending_ == 0; };
      if (share_ <= 0) {
        idle_.wait(lock, idle);
      } else {
        // A piece that took d is followed by at least d (1 - s) / s of request compute, and
        // never sooner than kMinWait after it asked (requests keep the machine most of the time).
        const auto due = std::max(
            Clock::now() + kMinWait,
            last_end_ + std::chrono::duration_cast<Clock::duration>(last_duration_ *
                                                                    ((1 - share_) / share_)));
        if (!idle_.wait_until(lock, due, idle)) background_turn_ = true;
      }
    }
    const auto start = Clock::now();
    Status st;
    {
      std::lock_guard<std::mutex> slot(compute_);
      st = f();
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      background_turn_ = false;
      last_end_ = Clock::now();
      last_duration_ = last_end_ - start;
    }
    turn_.notify_all();
    return st;
  }

 private:
  static constexpr std::chrono::milliseconds kMinWait{200};
  const double share_;
  std::mutex mu_;
  std::condition_variable idle_;
  std::condition_variable turn_;
  int pending_ = 0;
  bool background_turn_ = false;  // a starved background piece goes next
  std::chrono::steady_clock::time_point last_end_{};
  std::chrono::steady_clock::duration last_duration_{};
  std::mutex compute_;
};

}  // namespace ckv::server
