#include "server/scheduler.h"

#include <algorithm>
#include <exception>

namespace ckv::server {
namespace {

double MsBetween(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

}  // namespace

Scheduler::Scheduler(ReprefillEngine& engine, const ModelConfig& model, const Config& config,
                     ComputeGate& gate, Metrics& metrics)
    : engine_(engine),
      model_(model),
      config_(config),
      gate_(gate),
      metrics_(metrics),
      thread_([this] { Loop(); }) {}

Scheduler::~Scheduler() {
  Shutdown();
}

std::variant<std::future<GenerationOutcome>, Scheduler::Refusal> Scheduler::Submit(
    GenerationJob job) {
  auto entry = std::make_unique<Entry>();
  entry->job = std::move(job);
  entry->queued_at = Clock::now();
  if (config_.request_timeout_s > 0) {
    entry->deadline =
        entry->queued_at + std::chrono::duration_cast<Clock::duration>(
                               std::chrono::duration<double>(config_.request_timeout_s));
  }
  entry->kv_bound = ReprefillEngine::SequenceKVBytesBound(
      model_, static_cast<int64_t>(entry->job.prompt.size()), entry->job.options.max_tokens);
  auto future = entry->done.get_future();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return Refusal::kStopping;
    if (queue_.size() >= config_.max_queue) return Refusal::kQueueFull;
    gate_.RequestPending();  // Before the scheduler can see it: RequestDone must come after.
    queue_.push_back(std::move(entry));
    metrics_.requests_waiting = static_cast<int64_t>(queue_.size());
  }
  cv_.notify_all();
  return future;
}

void Scheduler::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!thread_.joinable()) return;
    stopping_ = true;
    for (auto& e : queue_) e->job.cancelled->store(true);
  }
  cv_.notify_all();
  thread_.join();
}

void Scheduler::Complete(std::unique_ptr<Entry> e, Status status) {
  GenerationOutcome out;
  out.status = std::move(status);
  out.queue_ms = e->queue_ms;
  out.timed_out = e->timed_out;
  if (e->seq != nullptr) {
    out.result = e->seq->TakeResult();
    e->seq.reset();  // its KV is freed before the next admission
  }
  out.cancelled = e->job.cancelled->load() || out.result.stats.cancelled;
  if (out.cancelled && !e->timed_out) metrics_.requests_cancelled += 1;
  if (e->timed_out) metrics_.requests_timed_out += 1;
  {
    std::lock_guard<std::mutex> lock(mu_);
    out.server_stopping = out.cancelled && !e->timed_out && stopping_;
  }
  kv_reserved_ -= e->kv_bound;
  e->kv_bound = 0;
  // Before the answer goes out: a client reading /metrics after its answer must not see the
  // bound of a sequence already freed (the step's UpdateGauges comes later).
  metrics_.sequence_kv_reserved_bytes = kv_reserved_;
  gate_.RequestDone();
  e->done.set_value(std::move(out));
  if (e->job.on_done) e->job.on_done();
}

void Scheduler::Admit() {
  std::vector<std::unique_ptr<Entry>> dropped;
  const auto now = Clock::now();
  {
    std::lock_guard<std::mutex> lock(mu_);
    while (prefilling_ == nullptr && !queue_.empty()) {
      Entry& front = *queue_.front();
      if (front.job.cancelled->load() || now >= front.deadline) {
        front.timed_out = !front.job.cancelled->load();
        front.queue_ms = MsBetween(front.queued_at, now);
        dropped.push_back(std::move(queue_.front()));
        queue_.pop_front();
        continue;
      }
      const int active = static_cast<int>(running_.size());
      const bool room = active < config_.max_running &&
                        (active == 0 || kv_reserved_ + front.kv_bound <= config_.max_kv_bytes);
      if (!room) break;
      front.queue_ms = MsBetween(front.queued_at, now);
      kv_reserved_ += front.kv_bound;
      prefilling_ = std::move(queue_.front());
      queue_.pop_front();
    }
    metrics_.requests_waiting = static_cast<int64_t>(queue_.size());
  }
  for (auto& e : dropped) Complete(std::move(e), Status::OK());
  if (prefilling_ != nullptr && prefilling_->seq == nullptr) {
    ReprefillOptions opts = prefilling_->job.options;
    auto cancelled = prefilling_->job.cancelled;
    auto user = prefilling_->job.on_token;
    opts.on_token = [cancelled, user](int32_t id) {
      if (cancelled->load()) return false;
      return user ? user(id) : true;
    };
    auto seq = engine_.Begin(prefilling_->job.prompt, opts);
    if (!seq.ok()) {
      Complete(std::move(prefilling_), seq.status());
      return;
    }
    prefilling_->seq = std::move(seq).value();
  }
}

void Scheduler::Step() {
  const auto now = Clock::now();
  bool stopping;
  int admissible_waiting;  // queued requests with a free running slot after the prefilling one
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping = stopping_;
    const int free_slots = config_.max_running - static_cast<int>(running_.size()) - 1;
    admissible_waiting = std::max(0, std::min(static_cast<int>(queue_.size()), free_slots));
  }
  // Cancellation and deadlines take effect at this step.
  auto check = [&](Entry& e) {
    if (stopping) e.job.cancelled->store(true);
    if (e.job.cancelled->load()) e.seq->Cancel();
    if (now >= e.deadline && !e.seq->finished()) {
      e.timed_out = true;
      e.seq->Cancel();
    }
  };
  if (prefilling_ != nullptr) check(*prefilling_);
  for (auto& e : running_) check(*e);

  if (prefilling_ != nullptr) {
    // Alone, the prefill runs whole; beside decoding streams, one piece per step, a piece
    // longer by one for each request that waits with a slot free for it. Prefills run one at a
    // time, so when a batch's streams end together (closed-loop users whose requests started
    // together) the k-th newcomer waited k whole prefills in pieces before decoding: at 8 users
    // a step held 6.2 rows on average. A queue now drains in fewer steps; the running streams'
    // inter-token latency pays for it while it does.
    const int piece =
        running_.empty() ? 0 : config_.prefill_layers_per_step * (1 + admissible_waiting);
    const Status st = gate_.RunForRequest([&] {
      Metrics::ComputeTimer timer(metrics_, Metrics::Compute::kPrefill);
      try {
        return engine_.Prefill(*prefilling_->seq, piece);
      } catch (const std::exception& e) {
        // bad_alloc for a huge context, say: that request fails, the server goes on.
        return Status::Internal(std::string("exception: ") + e.what());
      }
    });
    if (!st.ok()) {
      Complete(std::move(prefilling_), st);
    } else if (prefilling_->seq->finished()) {
      Complete(std::move(prefilling_), Status::OK());
    } else if (prefilling_->seq->phase() == ReprefillSequence::Phase::kDecode) {
      running_.push_back(std::move(prefilling_));
    }
  }
  if (!running_.empty()) {
    std::vector<ReprefillSequence*> batch;
    for (auto& e : running_) {
      if (e->seq->phase() == ReprefillSequence::Phase::kDecode) batch.push_back(e->seq.get());
    }
    metrics_.decode_steps += 1;
    metrics_.decode_rows += static_cast<int64_t>(batch.size());
    const Status st = gate_.RunForRequest([&] {
      Metrics::ComputeTimer timer(metrics_, Metrics::Compute::kDecode);
      try {
        return engine_.DecodeStep(batch);
      } catch (const std::exception& e) {
        return Status::Internal(std::string("exception: ") + e.what());
      }
    });
    // A failed step leaves no sequence of the batch in a known state: all of them fail.
    std::vector<std::unique_ptr<Entry>> keep;
    for (auto& e : running_) {
      if (!st.ok()) {
        Complete(std::move(e), st);
      } else if (e->seq->finished()) {
        Complete(std::move(e), Status::OK());
      } else {
        keep.push_back(std::move(e));
      }
    }
    running_ = std::move(keep);
  }
  UpdateGauges();
}

void Scheduler::UpdateGauges() {
  int64_t bytes = 0;
  for (auto& e : running_) bytes += e->seq->memory_bytes();
  if (prefilling_ != nullptr && prefilling_->seq != nullptr) {
    bytes += prefilling_->seq->memory_bytes();
  }
  metrics_.requests_running =
      static_cast<int64_t>(running_.size()) + (prefilling_ != nullptr ? 1 : 0);
  metrics_.sequence_kv_bytes = bytes;
  metrics_.sequence_kv_reserved_bytes = kv_reserved_;
}

void Scheduler::Loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] {
        return stopping_ || !queue_.empty() || prefilling_ != nullptr || !running_.empty();
      });
      if (stopping_ && queue_.empty() && prefilling_ == nullptr && running_.empty()) break;
    }
    Admit();
    Step();
  }
  UpdateGauges();
}

}  // namespace ckv::server
