// The background store writer: after a request is answered, its prompt and its whole context
// (prompt + generated tokens) are stored as prefixes, so the next turn of a conversation (whose
// prompt starts with this one's context) Re-Prefills instead of recomputing. Never on a
// request's path: a bounded queue (a full queue skips the store and counts it) and compute
// only while no request is pending (ComputeGate). Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ckv/model.h"
#include "ckv/prefix_store.h"
#include "ckv/reprefill.h"
#include "server/compute_gate.h"
#include "server/metrics.h"

namespace ckv::server {

using LogFn = std::function<void(const std::string& line)>;

class StoreWriter {
 public:
  struct Config {
    StoreLayout layout;
    int64_t min_tokens = 64;  // shorter contexts are not worth a store entry
    size_t max_queue = 8;
    // Exact KV (ReprefillResult::exact_kv) that queued contexts may hold at once; beyond, a
    // context is queued without it and its store computes its KV again.
    int64_t max_queue_kv_bytes = int64_t{1} << 30;
    // Layers per compute piece (StoreContextOptions::layers_per_piece): how long a request
    // may wait for a store's piece in progress.
    int layers_per_piece = 4;
  };
  StoreWriter(const Model& model, PrefixStore& store, Config config, ComputeGate& gate,
              Metrics& metrics, LogFn log);
  ~StoreWriter();  // Shutdown(0)

  // What Enqueue decided: "queued", "skipped_too_short", "skipped_queue_full", "stopping".
  // Two prefixes are stored: the first `stable_tokens` of `context` (the part of the prompt
  // the next turn is sure to repeat), then the whole context, which the next turn repeats
  // unless the answer re-tokenizes differently there; the first is the fallback then.
  // `exact_kv` (optional): the request's own exact KV, whose rows both stores take instead of
  // computing them. When it covers all but fewer than kShortTail tokens of the context, the
  // whole context's entry is its first rows: computing the last few tokens would cost a pass
  // over the weights, and the next turn computes them inside its suffix for next to nothing.
  std::string Enqueue(std::vector<int32_t> context, int64_t stable_tokens,
                      std::shared_ptr<const ExactContextKV> exact_kv = nullptr);
  static constexpr int64_t kShortTail = 16;

  // Stops taking work, lets queued stores finish for at most `wait`, drops the rest (counted
  // as skipped_shutdown) and joins the thread.
  void Shutdown(std::chrono::milliseconds wait);
  // Blocks until the queue is empty and nothing is being stored (tests, graceful shutdown).
  void WaitIdle();

 private:
  struct Job {
    std::vector<int32_t> context;
    int64_t stable_tokens = 0;
    std::shared_ptr<const ExactContextKV> exact_kv;
  };
  void Loop();
  // Stores `tokens` and, when stable_tokens > 0, its first stable_tokens as their own entry
  // (one computation for both).
  void Store(std::span<const int32_t> tokens, int64_t stable_tokens,
             const ExactContextKV* exact_kv);
  void RefreshGauges();

  const Model& model_;
  PrefixStore& store_;
  const Config config_;
  ComputeGate& gate_;
  Metrics& metrics_;
  LogFn log_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  int64_t queued_kv_bytes_ = 0;  // exact KV held by queue_
  bool busy_ = false;
  bool stopping_ = false;
  bool drop_ = false;
  std::atomic<bool> dropping_{false};  // drop_, read by the compute pieces of a running store
  std::thread thread_;
};

}  // namespace ckv::server
