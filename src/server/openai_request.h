// The fields of an OpenAI /v1/chat/completions or /v1/completions request that we serve,
// validated: a wrong type or value is an ApiError naming the field (HTTP 400).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "ckv/generate.h"
#include "server/api_error.h"

namespace ckv::server {

enum class Endpoint { kChat, kCompletion };

struct CompletionRequest {
  Endpoint endpoint = Endpoint::kChat;
  std::string model;  // "" = the served model
  // Chat: messages with content normalized to strings (or null) and tool-call arguments as
  // JSON objects, as chat templates expect them.
  nlohmann::ordered_json messages;
  nlohmann::ordered_json tools;  // array or null
  // Completions: a string, or token ids.
  std::string prompt_text;
  std::vector<int32_t> prompt_ids;
  bool prompt_is_ids = false;
  std::optional<int64_t> max_tokens;
  SamplingOptions sampling;
  bool seed_given = false;
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;
  // vLLM's extension: the answer's token ids (and the prompt's) beside its text, for clients
  // that work in token space and continue a conversation with exactly the ids generated.
  bool return_token_ids = false;
  std::optional<double> budget;  // ckv_budget
  std::optional<bool> store;     // ckv_store
};

// Parses a request body: malformed JSON, nesting deeper than 64 levels or anything but a JSON
// object is an ApiError.
std::optional<ApiError> ParseBody(const std::string& text, nlohmann::ordered_json* out);

std::optional<ApiError> ParseCompletionRequest(const nlohmann::ordered_json& body,
                                               Endpoint endpoint, CompletionRequest* out);

// POST /apply-template and the chat path share this: messages (and tools) checked and
// normalized.
std::optional<ApiError> ParseMessages(const nlohmann::ordered_json& body,
                                      nlohmann::ordered_json* messages,
                                      nlohmann::ordered_json* tools);

}  // namespace ckv::server
