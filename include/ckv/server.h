// `ckv serve`: an OpenAI-compatible HTTP server over one model and one prefix store, with
// automatic, persistent prefix caching (every request's longest stored prefix is Re-Prefilled;
// what a request computed is stored in the background for the next one). See docs/SERVING.md.
//
// Threading: Start/Wait/Stop may be called from different threads; Stop is idempotent.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "ckv/prefix_store.h"
#include "ckv/status.h"

namespace ckv {

struct ServerOptions {
  std::string model_dir;
  // Map the weight files instead of reading them resident (ModelOptions::resident_weights):
  // less memory held, slower decode.
  bool mmap_weights = false;
  // Also keep the weights in the GEMM library's blocked layout (ModelOptions::pack_weights):
  // one more copy of the layers' matmul weights in memory, for faster short GEMMs, which is
  // what a server's Re-Prefills (a turn's new tokens) and background stores (a suffix and an
  // answer) run: ~1.3x at 32 tokens on the 0.5B shape (docs/BENCHMARKS.md). Decode reads the
  // plain copy.
  bool pack_weights = false;
  std::string store_dir;
  std::string host = "127.0.0.1";
  int port = 8080;                           // 0 = an ephemeral port (see Server::port())
  std::string system = "contiguouskv";       // any name ApplySystemName accepts
  double budget = 0.5;                       // default ckv_budget (see docs/SERVING.md)
  int64_t cache_bytes = int64_t{256} << 20;  // the memory cache of prefix KV
  int64_t store_max_bytes = 0;               // 0 = unbounded
  int64_t store_min_tokens = 64;             // shorter contexts are not stored
  int64_t max_context = 0;                   // 0 = the model's context
  int max_queue = 16;                        // requests waiting beyond the running ones: 429
  // Continuous batching (docs/SERVING.md): sequences decoded together, the KV their bounds
  // may reserve, the prefill piece (layers) run between decode steps, and a deadline per
  // request from its arrival (0 = none).
  int max_running = 8;
  int64_t max_batch_kv_bytes = int64_t{4} << 30;
  int prefill_layers_per_step = 4;
  double request_timeout_s = 0;
  int store_queue = 8;  // background stores waiting: beyond, skipped
  // The share of compute background stores take while requests never pause (0: stores run
  // only when no request is pending, and never under constant load).
  double store_compute_share = 0.25;
  std::string api_key;                         // "" = no key required
  std::string chat_template_file;              // "" = the model's tokenizer_config.json
  std::string served_model_name;               // "" = the model directory's name
  int64_t max_body_bytes = int64_t{16} << 20;  // 413 beyond
  StoreLayout layout = StoreLayout::PeriodMajor();
  double shutdown_store_wait_s = 30;  // background stores finish within this on Stop
  // Where log lines go (startup, warnings). Default: nowhere.
  std::function<void(const std::string& line)> log;
  // Test seams: store write faults (see StoreOptions::fault_injection), and a pause after each
  // generated token so that a tiny model generates slowly enough to observe cancellation.
  std::function<int(const std::string& path)> store_fault_injection;
  bool store_sync = true;  // fsync on publication (off only for tests)
  int debug_token_delay_ms = 0;
};

class Server {
 public:
  // Checks the options, binds the address (so port() is known and /health answers 503 while
  // the model loads), then loads model, store and chat template on a background thread.
  static Result<std::unique_ptr<Server>> Start(const ServerOptions& options);
  ~Server();  // Stop()

  int port() const;
  // Blocks until the model is loaded (OK) or failed to load (its error).
  Status WaitReady();
  // Blocks until Stop() is called (from another thread or a signal watcher).
  void Wait();
  // Stops accepting, cancels queued and running requests (they end at the next token), lets
  // background stores finish within shutdown_store_wait_s, closes the store.
  void Stop();

  struct Impl;

 private:
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ckv
