#include "server/store_writer.h"

#include "ckv/reprefill.h"

namespace ckv::server {

StoreWriter::StoreWriter(const Model& model, PrefixStore& store, Config config, ComputeGate& gate,
                         Metrics& metrics, LogFn log)
    : model_(model),
      store_(store),
      config_(std::move(config)),
      gate_(gate),
      metrics_(metrics),
      log_(std::move(log)),
      thread_([this] { Loop(); }) {
  RefreshGauges();
}

StoreWriter::~StoreWriter() {
  Shutdown(std::chrono::milliseconds(0));
}

std::string StoreWriter::Enqueue(std::vector<int32_t> context, int64_t stable_tokens,
                                 std::shared_ptr<const ExactContextKV> exact_kv) {
  if (static_cast<int64_t>(context.size()) < config_.min_tokens) {
    metrics_.CountStoreWrite("skipped_too_short");
    return "skipped_too_short";
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return "stopping";
    if (queue_.size() >= config_.max_queue) {
      metrics_.CountStoreWrite("skipped_queue_full");
      return "skipped_queue_full";
    }
    if (exact_kv != nullptr) {
      const int64_t bytes = exact_kv->bytes();
      if (queued_kv_bytes_ + bytes > config_.max_queue_kv_bytes) {
        exact_kv.reset();  // over the bound: this store computes instead
      } else {
        queued_kv_bytes_ += bytes;
      }
    }
    queue_.push_back({std::move(context), stable_tokens, std::move(exact_kv)});
    metrics_.store_pending = static_cast<int64_t>(queue_.size()) + (busy_ ? 1 : 0);
  }
  cv_.notify_all();
  return "queued";
}

void StoreWriter::Shutdown(std::chrono::milliseconds wait) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!thread_.joinable()) return;
  stopping_ = true;
  cv_.notify_all();
  if (!cv_.wait_for(lock, wait, [&] { return queue_.empty() && !busy_; })) {
    // Out of time: what is still queued is dropped; a store in progress finishes (a Put is
    // atomic either way, and killing it would only leave temporary files for recovery).
    for (size_t i = 0; i < queue_.size(); ++i) metrics_.CountStoreWrite("skipped_shutdown");
    queue_.clear();
    queued_kv_bytes_ = 0;
    metrics_.store_pending = busy_ ? 1 : 0;
  }
  drop_ = true;
  dropping_ = true;  // a store in progress stops at its next compute piece
  lock.unlock();
  cv_.notify_all();
  thread_.join();
}

void StoreWriter::WaitIdle() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return queue_.empty() && !busy_; });
}

void StoreWriter::Loop() {
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return !queue_.empty() || drop_ || (stopping_ && queue_.empty()); });
      if (queue_.empty() || drop_) return;
      job = std::move(queue_.front());
      queue_.pop_front();
      if (job.exact_kv != nullptr) queued_kv_bytes_ -= job.exact_kv->bytes();
      busy_ = true;
    }
    std::span<const int32_t> all(job.context);
    const ExactContextKV* given = job.exact_kv.get();
    if (given != nullptr) {
      const int64_t rows = given->SharedPrefix(all);  // the first rows the request computed
      const int64_t tail = static_cast<int64_t>(all.size()) - rows;
      if (tail > 0 && tail < kShortTail && rows >= config_.min_tokens &&
          rows >= job.stable_tokens) {
        all = all.first(rows);
      }
    }
    const bool with_stable = job.stable_tokens >= config_.min_tokens &&
                             job.stable_tokens < static_cast<int64_t>(all.size());
    Store(all, with_stable ? job.stable_tokens : 0, given);
    {
      std::lock_guard<std::mutex> lock(mu_);
      busy_ = false;
      metrics_.store_pending = static_cast<int64_t>(queue_.size());
    }
    cv_.notify_all();
  }
}

void StoreWriter::Store(std::span<const int32_t> tokens, int64_t stable_tokens,
                        const ExactContextKV* exact_kv) {
  StoreContextOptions opts;
  opts.exact_kv = exact_kv;
  opts.also_store_first = stable_tokens;
  opts.layers_per_piece = config_.layers_per_piece;
  opts.run_piece = [this](const std::function<Status()>& f) {
    if (dropping_) return Status::IOError("the server is stopping");
    return gate_.RunBackgroundPiece([&] {
      Metrics::ComputeTimer timer(metrics_, Metrics::Compute::kStore);
      return f();
    });
  };
  Result<StoredContext> stored = Status::Internal("not run");
  try {
    stored = StoreContext(model_, store_, config_.layout, tokens, opts);
  } catch (const std::exception& e) {
    stored = Status::Internal(std::string("exception: ") + e.what());
  }
  if (!stored.ok()) {
    // A full disk, an I/O error, a bound too small: the answer was already served; only the
    // next request's hit is lost.
    metrics_.CountStoreWrite("failed");
    if (log_)
      log_("warning: storing a context of " + std::to_string(tokens.size()) +
           " tokens failed: " + stored.status().ToString());
  } else {
    const bool exists = stored->reused_tokens == static_cast<int64_t>(tokens.size());
    if (stored->first_info) metrics_.CountStoreWrite("stored");
    metrics_.CountStoreWrite(exists ? "exists" : "stored");
    if (!exists) {
      metrics_.store_tokens_read += stored->reused_tokens;
      metrics_.store_tokens_given += stored->given_tokens;
      metrics_.store_tokens_computed += stored->computed_tokens;
    }
  }
  RefreshGauges();
}

void StoreWriter::RefreshGauges() {
  metrics_.store_bytes = store_.total_bytes();
  metrics_.store_prefixes = static_cast<int64_t>(store_.size());
}

}  // namespace ckv::server
