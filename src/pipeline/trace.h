// Chrome trace-event timeline of a request (opens in Perfetto / chrome://tracing): compute
// per layer on one track, I/O batches on another, waits in between.
#pragma once

#include <chrono>
#include <mutex>
#include <string>
#include <vector>

#include "ckv/status.h"

namespace ckv {

class Tracer {
 public:
  enum Track { kCompute = 1, kIo = 2 };
  explicit Tracer(bool enabled) : enabled_(enabled), t0_(std::chrono::steady_clock::now()) {}

  bool enabled() const { return enabled_; }
  // Microseconds since the tracer was created.
  double NowUs() const;
  // A complete event [begin_us, end_us] on a track, with optional args (a JSON object text).
  void Complete(Track track, std::string name, double begin_us, double end_us,
                std::string args_json = "");
  Status WriteJson(const std::string& path) const;

 private:
  struct Event {
    Track track;
    std::string name;
    double begin_us, end_us;
    std::string args;
  };
  const bool enabled_;
  const std::chrono::steady_clock::time_point t0_;
  mutable std::mutex mu_;
  std::vector<Event> events_;
};

}  // namespace ckv
