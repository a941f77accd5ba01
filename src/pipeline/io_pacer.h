// Emulation of a slower storage device, for measuring the I/O-bound regime on a machine whose
// disk (or page-cache-free NVMe) is faster than the one being modelled: a token bucket with no
// burst, i.e. a device that serves reads in the order they were issued at `bytes_per_second`.
// A read issued at time t of b bytes completes no earlier than max(t, when the device frees
// up) + b / rate. The real read still happens; the emulation only holds its completion back, so
// the effective bandwidth is min(real, cap). A simulation: it models bandwidth, not latency or
// queue-depth effects.
//
// Threading: Reserve may be called from any thread (the I/O thread and a compute thread
// reading synchronously when the prefetch pool is full).
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>

namespace ckv {

class IoPacer {
 public:
  using Clock = std::chrono::steady_clock;

  // bytes_per_second <= 0: no pacing (Reserve returns "now").
  explicit IoPacer(double bytes_per_second) : rate_(bytes_per_second) {}

  bool enabled() const { return rate_ > 0; }
  double bytes_per_second() const { return rate_; }

  // Books the emulated device for a read of `bytes` issued now; returns when it completes.
  Clock::time_point Reserve(uint64_t bytes);

 private:
  const double rate_;
  std::mutex mu_;
  Clock::time_point free_at_{};  // when the emulated device finishes what it was given
};

}  // namespace ckv
