// The server's Prometheus metrics (GET /metrics, text format 0.0.4). Thread-safe: counters
// and gauges are updated from HTTP threads, the scheduler and the store writer.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace ckv::server {

// Cumulative buckets (seconds) as Prometheus wants them.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void Observe(double value);
  // Appends the _bucket/_sum/_count lines of `name`.
  void Render(const std::string& name, std::string& out) const;

 private:
  const std::vector<double> bounds_;
  mutable std::mutex mu_;
  std::vector<uint64_t> counts_;  // per bucket (not cumulative), last = +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

class Metrics {
 public:
  Metrics();

  void CountRequest(const std::string& endpoint, int code);
  std::atomic<int64_t> prompt_tokens{0};
  std::atomic<int64_t> generation_tokens{0};
  std::atomic<int64_t> prefix_cache_queries{0};  // prompt tokens looked up in the store
  std::atomic<int64_t> prefix_cache_hits_memory{0};
  std::atomic<int64_t> prefix_cache_hits_ssd{0};
  std::atomic<int64_t> ssd_bytes_read{0};
  std::atomic<int64_t> prefix_fallbacks{0};    // stored prefix failed: the request recomputed
  std::atomic<int64_t> requests_cancelled{0};  // client gone or server stopping
  std::atomic<int64_t> requests_timed_out{0};  // --request-timeout
  void CountStoreWrite(const std::string& result);
  std::atomic<int64_t> store_bytes{0};
  std::atomic<int64_t> store_prefixes{0};
  std::atomic<int64_t> store_pending{0};  // contexts queued or being stored
  // Tokens of newly stored contexts by where their KV came from: read back from the stored
  // parent, given by the request that computed it exactly, computed by the store writer.
  std::atomic<int64_t> store_tokens_read{0};
  std::atomic<int64_t> store_tokens_given{0};
  std::atomic<int64_t> store_tokens_computed{0};
  std::atomic<int64_t> requests_running{0};
  std::atomic<int64_t> requests_waiting{0};
  std::atomic<int64_t> decode_steps{0};  // batched decode steps
  std::atomic<int64_t> decode_rows{0};   // sequences they advanced (rows / steps = batch size)
  // Where the model's compute time goes (the compute gate runs one of them at a time): with
  // the wall time, what bounds a load (decode steps, request prefills, background stores).
  enum class Compute { kDecode, kPrefill, kStore };
  void AddComputeSeconds(Compute kind, double seconds);
  // Adds the seconds from its construction to its destruction: put one in the scope that
  // runs the compute.
  class ComputeTimer {
   public:
    ComputeTimer(Metrics& metrics, Compute kind)
        : metrics_(metrics), kind_(kind), start_(std::chrono::steady_clock::now()) {}
    ~ComputeTimer() {
      metrics_.AddComputeSeconds(
          kind_, std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
    }
    ComputeTimer(const ComputeTimer&) = delete;
    ComputeTimer& operator=(const ComputeTimer&) = delete;

   private:
    Metrics& metrics_;
    const Compute kind_;
    const std::chrono::steady_clock::time_point start_;
  };
  std::atomic<int64_t> sequence_kv_bytes{0};           // held by admitted sequences
  std::atomic<int64_t> sequence_kv_reserved_bytes{0};  // their bounds (admission limit)
  Histogram ttft;
  Histogram request_duration;

  // The whole exposition text.
  std::string Render() const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, int64_t> requests_;  // (endpoint, code) -> count
  std::map<std::string, int64_t> store_writes_;              // result -> count
  double compute_seconds_[3] = {0, 0, 0};                    // by Compute
};

}  // namespace ckv::server
