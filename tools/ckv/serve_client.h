// The HTTP client side of `ckv bench serve`: one streamed completion request against a
// running `ckv serve` (or any OpenAI-compatible server), timed from the client's side.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace ckv::cli {

struct StreamedCompletion {
  int http_status = 0;  // 0: no answer (connection failed)
  std::string error;    // transport error, an error object or an SSE error event
  std::string text;     // the answer
  double ttft_ms = 0;   // request sent -> first token event
  double e2e_ms = 0;    // request sent -> end of stream
  int token_events = 0;
  double mean_itl_ms = 0;  // mean gap between token events after the first
  nlohmann::json usage;    // the final usage chunk (stream_options.include_usage)
  // The answer's token ids, when the body asked for them (return_token_ids) and the server
  // sent them; has_token_ids says it did.
  std::vector<int32_t> token_ids;
  bool has_token_ids = false;
  bool ok() const { return http_status == 200 && error.empty() && !usage.is_null(); }
};

// POSTs `body` (stream and include_usage are set here) to host:port/v1/completions and reads
// its Server-Sent Events.
StreamedCompletion PostStreamedCompletion(const std::string& host, int port, nlohmann::json body,
                                          double timeout_s);

// The value of an unlabelled series on the server's /metrics; -1 when it cannot be read.
double FetchMetric(const std::string& host, int port, const std::string& series);

}  // namespace ckv::cli
