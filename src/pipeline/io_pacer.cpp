#include "pipeline/io_pacer.h"

#include <algorithm>

namespace ckv {

IoPacer::Clock::time_point IoPacer::Reserve(uint64_t bytes) {
  const Clock::time_point now = Clock::now();
  if (!enabled()) return now;
  const auto busy = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(static_cast<double>(bytes) / rate_));
  std::lock_guard<std::mutex> lock(mu_);
  free_at_ = std::max(free_at_, now) + busy;
  return free_at_;
}

}  // namespace ckv
