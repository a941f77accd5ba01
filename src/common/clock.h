// Wall-clock helpers for the stats every request reports.
#pragma once

#include <chrono>

namespace ckv {

using SteadyClock = std::chrono::steady_clock;

// Milliseconds elapsed since t0.
inline double MsSince(SteadyClock::time_point t0) {
  return std::chrono::duration<double, std::milli>(SteadyClock::now() - t0).count();
}

}  // namespace ckv
