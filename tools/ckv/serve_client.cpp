#include "serve_client.h"

#include <httplib.h>

#include <chrono>
#include <sstream>

namespace ckv::cli {

StreamedCompletion PostStreamedCompletion(const std::string& host, int port, nlohmann::json body,
                                          double timeout_s) {
  using Clock = std::chrono::steady_clock;
  StreamedCompletion out;
  body["stream"] = true;
  body["stream_options"] = {{"include_usage", true}};
  httplib::Client client(host, port);
  const auto secs = static_cast<time_t>(timeout_s);
  client.set_read_timeout(secs, 0);
  client.set_connection_timeout(10, 0);

  std::string buffer;
  Clock::time_point first, last;
  const auto t0 = Clock::now();
  auto on_event = [&](const std::string& data) {
    if (data == "[DONE]") return;
    const nlohmann::json j = nlohmann::json::parse(data, nullptr, false);
    if (j.is_discarded()) {
      out.error = "malformed SSE event: " + data.substr(0, 200);
      return;
    }
    if (j.contains("error")) {
      out.error = j["error"].value("message", j["error"].dump());
      return;
    }
    if (j.contains("usage") && !j["usage"].is_null()) out.usage = j["usage"];
    if (!j.contains("choices") || j["choices"].empty()) return;
    const auto& choice = j["choices"][0];
    if (choice.contains("token_ids") && choice["token_ids"].is_array()) {
      out.has_token_ids = true;
      for (const auto& t : choice["token_ids"]) {
        if (!t.is_number_integer()) {
          out.error = "token_ids holds something other than ids: " + choice["token_ids"].dump();
          return;
        }
        out.token_ids.push_back(t.get<int32_t>());
      }
    }
    const std::string piece = choice.value("text", "");
    if (piece.empty()) return;
    const auto now = Clock::now();
    if (out.token_events == 0) first = now;
    last = now;
    ++out.token_events;
    out.text += piece;
  };
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  std::string error_body;
  req.response_handler = [&](const httplib::Response& res) {
    out.http_status = res.status;
    return true;
  };
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    if (out.http_status != 200) {
      error_body.append(data, n);
      return true;
    }
    buffer.append(data, n);
    for (size_t end; (end = buffer.find("\n\n")) != std::string::npos;) {
      const std::string event = buffer.substr(0, end);
      buffer.erase(0, end + 2);
      if (event.rfind("data: ", 0) == 0) on_event(event.substr(6));
    }
    return true;
  };
  auto res = client.send(req);
  out.e2e_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  if (!res) {
    out.error = "HTTP: " + httplib::to_string(res.error());
    return out;
  }
  out.http_status = res->status;
  if (out.http_status != 200 && out.error.empty()) {
    const nlohmann::json j = nlohmann::json::parse(error_body, nullptr, false);
    out.error = !j.is_discarded() && j.contains("error")
                    ? j["error"].value("message", error_body)
                    : "HTTP " + std::to_string(out.http_status) + ": " + error_body.substr(0, 200);
  }
  if (out.token_events > 0) {
    out.ttft_ms = std::chrono::duration<double, std::milli>(first - t0).count();
    if (out.token_events > 1) {
      out.mean_itl_ms =
          std::chrono::duration<double, std::milli>(last - first).count() / (out.token_events - 1);
    }
  } else {
    out.ttft_ms = out.e2e_ms;  // no token (an immediate end of sequence): the answer's time
  }
  if (out.error.empty() && out.http_status == 200 && out.usage.is_null()) {
    out.error = "the stream ended without its usage chunk";
  }
  return out;
}

double FetchMetric(const std::string& host, int port, const std::string& series) {
  httplib::Client c(host, port);
  auto res = c.Get("/metrics");
  if (!res || res->status != 200) return -1;
  std::istringstream in(res->body);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  }
  return -1;
}

}  // namespace ckv::cli
