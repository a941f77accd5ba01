// OpenAI error objects: {"error": {"message", "type", "param", "code"}} with the HTTP status.
#pragma once

#include <string>

namespace ckv::server {

struct ApiError {
  int http_status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // the request field at fault ("" = null)
  std::string code;   // machine-readable ("" = null)

  static ApiError BadRequest(std::string message, std::string param = "") {
    return {400, std::move(message), "invalid_request_error", std::move(param), ""};
  }
  // 503: loading, stopping, or stopped before the answer was complete.
  static ApiError Unavailable(std::string message) {
    return {503, std::move(message), "server_error", "", "unavailable"};
  }
  std::string ToJson() const;
};

}  // namespace ckv::server
