// Keeps model compute apart between requests and background stores, with requests first: a
// store runs a piece of compute while no request is queued or running, or, under a load that
// never pauses, once it has waited long enough for its share of the compute (without which the
// prefixes that make the next turns cheap would never be stored while users keep arriving).
// Storing delays a request by at most one piece (StoreContextOptions::piece_tokens) at a time.
//
// All of it runs on one thread the gate owns. OpenMP (libgomp) keeps a pool of worker threads
// per thread that starts parallel regions, and once a process's pools hold more threads than
// there are CPUs, every pool's workers stop spinning between regions and sleep at once, so
// each region then waits for a futex wake-up: with the store writer's pool beside the
// scheduler's on 2 CPUs, a single-row decode step (~170 regions) took 42-49 ms instead of 32-35.
// Thread-safe; callers block until their compute has run.
#pragma once

#include <chrono>
#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

#include "ckv/status.h"

namespace ckv::server {

class ComputeGate {
 public:
  // `background_share` in [0, 1): the fraction of compute time background pieces may take
  // under constant load (0: only when no request is pending).
  explicit ComputeGate(double background_share = 0);
  // No Run* call may be in flight.
  ~ComputeGate();
  ComputeGate(const ComputeGate&) = delete;
  ComputeGate& operator=(const ComputeGate&) = delete;

  // A request is queued or running (from Submit until it finishes).
  void RequestPending();
  void RequestDone();
  // Runs a request's compute (a prefill piece, a decode step) once no background piece has
  // its turn; returns what `f` returns (an exception it throws is rethrown here).
  Status RunForRequest(const std::function<Status()>& f);
  // Runs a background piece once no request is pending, or once its share is due; returns
  // what `f` returns (an exception it throws is rethrown here).
  Status RunBackgroundPiece(const std::function<Status()>& f);

 private:
  // One caller at a time hands `f` to the compute thread and waits for it.
  Status RunOnComputeThread(const std::function<Status()>& f);
  void ComputeLoop();

  // The least a background piece waits while requests are pending. Store pieces are a few
  // layers (~20-150 ms on the 0.5B shape): with 200 ms they got well under their share
  // (12-16% of the wall instead of 25%) and fell behind a multi-turn load.
  static constexpr std::chrono::milliseconds kMinWait{50};
  const double share_;
  std::mutex mu_;
  std::condition_variable idle_;
  std::condition_variable turn_;
  int pending_ = 0;
  bool background_turn_ = false;  // a starved background piece goes next
  std::chrono::steady_clock::time_point last_end_{};
  std::chrono::steady_clock::duration last_duration_{};
  std::mutex compute_;  // held by the one caller whose compute is handed over

  std::mutex task_mu_;
  std::condition_variable task_cv_;
  const std::function<Status()>* task_ = nullptr;  // the compute to run, set under task_mu_
  bool task_done_ = false;
  Status task_status_;
  std::exception_ptr task_error_;
  bool stop_ = false;
  std::thread thread_;  // last: starts once everything above exists
};

}  // namespace ckv::server
