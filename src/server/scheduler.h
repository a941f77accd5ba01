// Runs completion requests on the model, one at a time, through the same ReprefillEngine the
// CLI uses (longest stored prefix found by content, Re-Prefill at the request's budget, or a
// plain prefill when nothing is stored). Requests wait in a bounded queue; a full queue is
// refused at once (the HTTP layer answers 429). Thread-safe.
//
// One worker thread now; the continuous-batching scheduler (issue 11) replaces Loop() and keeps
// this interface: Submit a job, get tokens through its callback and the outcome through a future.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <variant>
#include <vector>

#include "ckv/reprefill.h"
#include "server/compute_gate.h"
#include "server/metrics.h"

namespace ckv::server {

struct GenerationJob {
  std::vector<int32_t> prompt;
  ReprefillOptions options;  // system, budget, sampling, max_tokens; on_token is set here
  // Called on the worker thread with each token; return false to stop (a stop string).
  std::function<bool(int32_t)> on_token;
  // Set by the HTTP side when the client went away or the server stops: generation ends
  // at the next token, a job still queued never starts.
  std::shared_ptr<std::atomic<bool>> cancelled = std::make_shared<std::atomic<bool>>(false);
  // Called on the worker thread right after the outcome is set (wakes a streaming handler).
  std::function<void()> on_done;
};

struct GenerationOutcome {
  Status status;  // not OK: the request failed (a bug or an unusable model state)
  ReprefillResult result;
  double queue_ms = 0;  // waiting for the worker
  bool cancelled = false;
  bool server_stopping = false;  // cancelled because the server stops (not by the client)
};

class EngineWorker {
 public:
  EngineWorker(ReprefillEngine& engine, size_t max_queue, ComputeGate& gate, Metrics& metrics);
  ~EngineWorker();  // Shutdown()

  enum class Refusal { kQueueFull, kStopping };
  // The outcome's future, or why the job was not taken.
  std::variant<std::future<GenerationOutcome>, Refusal> Submit(GenerationJob job);
  // Cancels queued and running jobs, then joins the worker.
  void Shutdown();

 private:
  struct Entry {
    GenerationJob job;
    std::promise<GenerationOutcome> done;
    std::chrono::steady_clock::time_point queued_at;
  };
  void Loop();

  ReprefillEngine& engine_;
  const size_t max_queue_;
  ComputeGate& gate_;
  Metrics& metrics_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Entry>> queue_;
  std::shared_ptr<std::atomic<bool>> running_cancel_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace ckv::server
