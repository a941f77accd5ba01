#include "server/metrics.h"

#include <cstdio>

namespace ckv::server {
namespace {

std::string Num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.12g", v);  // 0.025, not 0.025000000000000001
  return buf;
}

void Header(std::string& out, const char* name, const char* type, const char* help) {
  out += "# HELP ";
  out += name;
  out += " ";
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += " ";
  out += type;
  out += "\n";
}

void Scalar(std::string& out, const char* name, const char* type, const char* help, double v) {
  Header(out, name, type, help);
  out += name;
  out += " " + Num(v) + "\n";
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::Observe(double value) {
  size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i]) ++i;
  std::lock_guard<std::mutex> lock(mu_);
  ++counts_[i];
  sum_ += value;
  ++count_;
}

void Histogram::Render(const std::string& name, std::string& out) const {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    out += name + "_bucket{le=\"" + Num(bounds_[i]) + "\"} " + std::to_string(cumulative) + "\n";
  }
  cumulative += counts_.back();
  out += name + "_bucket{le=\"+Inf\"} " + std::to_string(cumulative) + "\n";
  out += name + "_sum " + Num(sum_) + "\n";
  out += name + "_count " + std::to_string(count_) + "\n";
}

Metrics::Metrics()
    : ttft({0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}),
      request_duration({0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}) {
  // Every result is exported from the start (as 0), so a scraper's rate() and a client waiting
  // for a count see the series before its first event.
  for (const char* result : {"stored", "exists", "skipped_queue_full", "skipped_too_short",
                             "skipped_shutdown", "failed"}) {
    store_writes_[result] = 0;
  }
}

void Metrics::CountRequest(const std::string& endpoint, int code) {
  std::lock_guard<std::mutex> lock(mu_);
  ++requests_[{endpoint, code}];
}

void Metrics::CountStoreWrite(const std::string& result) {
  std::lock_guard<std::mutex> lock(mu_);
  ++store_writes_[result];
}

void Metrics::AddComputeSeconds(Compute kind, double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  compute_seconds_[static_cast<int>(kind)] += seconds;
}

std::string Metrics::Render() const {
  std::string out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Header(out, "ckv_requests_total", "counter",
           "HTTP requests answered, by endpoint and status code.");
    for (const auto& [key, n] : requests_) {
      out += "ckv_requests_total{endpoint=\"" + key.first + "\",code=\"" +
             std::to_string(key.second) + "\"} " + std::to_string(n) + "\n";
    }
    Header(out, "ckv_store_writes_total", "counter",
           "Background stores of request contexts, by result (stored, exists, skipped_queue_full, "
           "skipped_too_short, skipped_shutdown, failed).");
    for (const auto& [result, n] : store_writes_) {
      out += "ckv_store_writes_total{result=\"" + result + "\"} " + std::to_string(n) + "\n";
    }
    Header(out, "ckv_compute_seconds_total", "counter",
           "Model compute time by kind: decode (batched decode steps), prefill (requests' "
           "prefills and Re-Prefills), store (background stores' pieces) (seconds).");
    const char* kinds[] = {"decode", "prefill", "store"};
    for (int i = 0; i < 3; ++i) {
      out += std::string("ckv_compute_seconds_total{kind=\"") + kinds[i] + "\"} " +
             Num(compute_seconds_[i]) + "\n";
    }
  }
  Scalar(out, "ckv_prompt_tokens_total", "counter", "Prompt tokens processed (tokens).",
         prompt_tokens.load());
  Scalar(out, "ckv_generation_tokens_total", "counter", "Tokens generated (tokens).",
         generation_tokens.load());
  Scalar(out, "ckv_prefix_cache_queries_total", "counter",
         "Prompt tokens looked up in the prefix store (tokens).", prefix_cache_queries.load());
  Header(out, "ckv_prefix_cache_hits_total", "counter",
         "Prompt tokens whose KV came from a stored prefix instead of being computed (tokens), "
         "by the tier that served the attended bytes (memory cache or SSD).");
  out += "ckv_prefix_cache_hits_total{tier=\"memory\"} " +
         std::to_string(prefix_cache_hits_memory.load()) + "\n";
  out += "ckv_prefix_cache_hits_total{tier=\"ssd\"} " +
         std::to_string(prefix_cache_hits_ssd.load()) + "\n";
  Scalar(out, "ckv_ssd_bytes_read_total", "counter",
         "Bytes read from the prefix store by Re-Prefill (bytes).", ssd_bytes_read.load());
  Scalar(out, "ckv_prefix_fallbacks_total", "counter",
         "Requests whose stored prefix failed to read (corrupt, I/O error) and were recomputed "
         "(requests).",
         prefix_fallbacks.load());
  Scalar(out, "ckv_requests_cancelled_total", "counter",
         "Completion requests that ended early because the client disconnected or the server "
         "stopped (requests).",
         requests_cancelled.load());
  Scalar(out, "ckv_requests_timed_out_total", "counter",
         "Completion requests ended by --request-timeout (requests).", requests_timed_out.load());
  Scalar(out, "ckv_store_bytes", "gauge", "Bytes of all stored prefix data on disk (bytes).",
         store_bytes.load());
  Scalar(out, "ckv_store_prefixes", "gauge", "Stored prefixes (prefixes).", store_prefixes.load());
  Header(out, "ckv_store_tokens_total", "counter",
         "Tokens of newly stored contexts by where their KV came from: read back from the stored "
         "parent, given by the request that computed it with exact attention, or computed by "
         "the store writer (tokens).");
  out +=
      "ckv_store_tokens_total{source=\"read\"} " + std::to_string(store_tokens_read.load()) + "\n";
  out += "ckv_store_tokens_total{source=\"given\"} " + std::to_string(store_tokens_given.load()) +
         "\n";
  out += "ckv_store_tokens_total{source=\"computed\"} " +
         std::to_string(store_tokens_computed.load()) + "\n";
  Scalar(out, "ckv_store_pending", "gauge",
         "Request contexts queued for the background store writer or being stored (contexts).",
         store_pending.load());
  Scalar(out, "ckv_requests_running", "gauge", "Completion requests being computed (requests).",
         requests_running.load());
  Scalar(out, "ckv_requests_waiting", "gauge", "Completion requests queued (requests).",
         requests_waiting.load());
  Scalar(out, "ckv_decode_steps_total", "counter",
         "Decode steps: one pass over the weights for every running sequence (steps).",
         decode_steps.load());
  Scalar(out, "ckv_decode_rows_total", "counter",
         "Sequences advanced by decode steps; divided by the steps, the mean batch (tokens).",
         decode_rows.load());
  Scalar(out, "ckv_sequence_kv_bytes", "gauge",
         "KV held by running sequences for decoding, plus the admitted prefill's activations "
         "(bytes).",
         sequence_kv_bytes.load());
  Scalar(out, "ckv_sequence_kv_reserved_bytes", "gauge",
         "KV bound reserved by admitted sequences, what --max-batch-kv-mib limits (bytes).",
         sequence_kv_reserved_bytes.load());
  Header(out, "ckv_time_to_first_token_seconds", "histogram",
         "Time from a completion request's arrival to its first token (seconds).");
  ttft.Render("ckv_time_to_first_token_seconds", out);
  Header(out, "ckv_request_duration_seconds", "histogram",
         "Time from a completion request's arrival to its last token (seconds).");
  request_duration.Render("ckv_request_duration_seconds", out);
  return out;
}

}  // namespace ckv::server
