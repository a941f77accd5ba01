// Continuous batching: runs completion requests on the model through one ReprefillEngine
// (longest stored prefix found by content, Re-Prefill at the request's budget, or a plain
// prefill when nothing is stored), up to `max_running` sequences at once. Each step decodes
// every running sequence together (one pass over the weights for all of them) and advances
// the one request being admitted by a piece of its prefill (a few layers), so running streams
// keep their inter-token latency while a long context is Re-Prefilled; its prefix reads go on
// between pieces. Admission is FIFO and waits while `max_running` sequences run or their KV
// bound (ReprefillEngine::SequenceKVBytesBound) would pass `max_kv_bytes`; beyond
// `max_queue` waiting requests, Submit refuses (the HTTP layer answers 429). A cancelled job
// (client gone, server stopping) or one past its deadline frees its sequence at the next step.
// Thread-safe; one scheduler thread drives the engine.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
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
  // Called with each token on the compute gate's thread, inside the step that produced it,
  // while the scheduler thread waits for that step; return false to stop (a stop string). It
  // holds up every running sequence: it must not block.
  std::function<bool(int32_t)> on_token;
  // Set by the HTTP side when the client went away or the server stops: generation ends
  // at the next step, a job still queued never starts.
  std::shared_ptr<std::atomic<bool>> cancelled = std::make_shared<std::atomic<bool>>(false);
  // Called on the scheduler thread right after the outcome is set (wakes a streaming handler).
  std::function<void()> on_done;
};

struct GenerationOutcome {
  Status status;  // not OK: the request failed (a bug or an unusable model state)
  ReprefillResult result;
  double queue_ms = 0;  // waiting for admission
  bool cancelled = false;
  bool server_stopping = false;  // cancelled because the server stops (not by the client)
  bool timed_out = false;        // ended by the request timeout (what was generated is kept)
};

class Scheduler {
 public:
  struct Config {
    size_t max_queue = 16;                    // waiting requests beyond the running ones
    int max_running = 8;                      // sequences prefilling or decoding at once
    int64_t max_kv_bytes = int64_t{4} << 30;  // sum of the running sequences' KV bounds
    double request_timeout_s = 0;             // from submission; 0 = none
    int prefill_layers_per_step = 4;          // prefill piece while other sequences decode
  };
  Scheduler(ReprefillEngine& engine, const ModelConfig& model, const Config& config,
            ComputeGate& gate, Metrics& metrics);
  ~Scheduler();  // Shutdown()

  enum class Refusal { kQueueFull, kStopping };
  // The outcome's future, or why the job was not taken.
  std::variant<std::future<GenerationOutcome>, Refusal> Submit(GenerationJob job);
  // Cancels queued and running jobs, then joins the scheduler thread.
  void Shutdown();

 private:
  using Clock = std::chrono::steady_clock;
  struct Entry {
    GenerationJob job;
    std::promise<GenerationOutcome> done;
    Clock::time_point queued_at;
    Clock::time_point deadline = Clock::time_point::max();
    double queue_ms = 0;
    int64_t kv_bound = 0;
    bool timed_out = false;
    std::unique_ptr<ReprefillSequence> seq;
  };
  void Loop();
  // Takes queued jobs while there is room; those cancelled or expired while waiting are
  // answered without starting.
  void Admit();
  void Step();
  // Sets the outcome, gives the job's KV reservation back, wakes its handler.
  void Complete(std::unique_ptr<Entry> e, Status status);
  void UpdateGauges();

  ReprefillEngine& engine_;
  const ModelConfig model_;
  const Config config_;
  ComputeGate& gate_;
  Metrics& metrics_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Entry>> queue_;
  bool stopping_ = false;

  // Scheduler thread only.
  std::unique_ptr<Entry> prefilling_;            // admitted, prefill not finished
  std::vector<std::unique_ptr<Entry>> running_;  // decoding
  int64_t kv_reserved_ = 0;

  std::thread thread_;  // last: starts after everything it reads is constructed
};

}  // namespace ckv::server
