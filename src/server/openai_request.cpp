#include "server/openai_request.h"

#include <cmath>
#include <cstdint>
#include <set>

namespace ckv::server {
namespace {

using json = nlohmann::ordered_json;

ApiError TypeError(const std::string& field, const std::string& expected) {
  return ApiError::BadRequest("'" + field + "' must be " + expected, field);
}

// Message content: a string, null, or an array of {"type": "text", "text": ...} parts (joined).
std::optional<ApiError> NormalizeContent(json& content, const std::string& field) {
  if (content.is_null() || content.is_string()) return std::nullopt;
  if (!content.is_array()) return TypeError(field, "a string, null or an array of text parts");
  std::string joined;
  for (const json& part : content) {
    // Checked field by field: json::value() throws when a present field has another type.
    if (!part.is_object() || !part.contains("type") || !part["type"].is_string() ||
        part["type"].get<std::string>() != "text" || !part.contains("text") ||
        !part["text"].is_string()) {
      return ApiError::BadRequest(
          "'" + field +
              "': only text content parts ({\"type\": \"text\", \"text\": ...}) are "
              "supported",
          field);
    }
    joined += part["text"].get<std::string>();
  }
  content = joined;
  return std::nullopt;
}

}  // namespace

std::optional<ApiError> ParseMessages(const json& body, json* messages, json* tools) {
  if (!body.contains("messages")) return ApiError::BadRequest("'messages' is required", "messages");
  const json& in = body["messages"];
  if (!in.is_array()) return TypeError("messages", "an array");
  if (in.empty()) return ApiError::BadRequest("'messages' must not be empty", "messages");
  static const std::set<std::string> kRoles = {"system", "developer", "user", "assistant", "tool"};
  *messages = json::array();
  for (size_t i = 0; i < in.size(); ++i) {
    const std::string field = "messages[" + std::to_string(i) + "]";
    json m = in[i];
    if (!m.is_object()) return TypeError(field, "an object");
    if (!m.contains("role") || !m["role"].is_string()) {
      return TypeError(field + ".role", "one of system, developer, user, assistant, tool");
    }
    const std::string role = m["role"];
    if (!kRoles.count(role)) {
      return ApiError::BadRequest(
          "'" + field + ".role' must be one of system, developer, user, assistant, tool (got '" +
              role + "')",
          field + ".role");
    }
    if (!m.contains("content")) m["content"] = nullptr;
    if (auto e = NormalizeContent(m["content"], field + ".content")) return e;
    if (m["content"].is_null() && role != "assistant") {
      return ApiError::BadRequest("'" + field + ".content' is required for role " + role,
                                  field + ".content");
    }
    if (m.contains("tool_calls")) {
      json& calls = m["tool_calls"];
      if (!calls.is_array()) return TypeError(field + ".tool_calls", "an array");
      for (size_t j = 0; j < calls.size(); ++j) {
        const std::string cf = field + ".tool_calls[" + std::to_string(j) + "]";
        json& call = calls[j];
        if (!call.is_object() || !call.contains("function") || !call["function"].is_object() ||
            !call["function"].contains("name") || !call["function"]["name"].is_string()) {
          return TypeError(cf, "an object with function.name");
        }
        // OpenAI sends arguments as a JSON string; templates expect an object.
        json& args = call["function"]["arguments"];
        if (args.is_string()) {
          json parsed = json::parse(args.get<std::string>(), nullptr, /*allow_exceptions=*/false);
          if (!parsed.is_discarded()) args = std::move(parsed);
        }
      }
    }
    messages->push_back(std::move(m));
  }
  *tools = nullptr;
  if (body.contains("tools") && !body["tools"].is_null()) {
    if (!body["tools"].is_array()) return TypeError("tools", "an array");
    *tools = body["tools"];
  }
  return std::nullopt;
}

std::optional<ApiError> ParseCompletionRequest(const json& body, Endpoint endpoint,
                                               CompletionRequest* out) {
  if (!body.is_object()) return ApiError::BadRequest("the request body must be a JSON object");
  out->endpoint = endpoint;
  out->sampling.temperature = 1.0f;  // OpenAI's default; 0 = greedy
  if (body.contains("model") && !body["model"].is_null()) {
    if (!body["model"].is_string()) return TypeError("model", "a string");
    out->model = body["model"];
  }
  if (endpoint == Endpoint::kChat) {
    if (auto e = ParseMessages(body, &out->messages, &out->tools)) return e;
  } else {
    if (!body.contains("prompt")) return ApiError::BadRequest("'prompt' is required", "prompt");
    json p = body["prompt"];
    if (p.is_array() && p.size() == 1 && p[0].is_string()) p = p[0];
    if (p.is_string()) {
      out->prompt_text = p;
      if (out->prompt_text.empty())
        return ApiError::BadRequest("'prompt' must not be empty", "prompt");
    } else if (p.is_array() && !p.empty() && p[0].is_number_integer()) {
      for (const json& id : p) {
        if (!id.is_number_integer()) {
          return TypeError("prompt", "a string or an array of token ids");
        }
        const int64_t v = id.get<int64_t>();  // checked before narrowing: 2^32 + 1 is not id 1
        if (v < 0 || v > INT32_MAX) {
          return ApiError::BadRequest(
              "token id " + std::to_string(v) + " is outside the vocabulary", "prompt");
        }
        out->prompt_ids.push_back(static_cast<int32_t>(v));
      }
      out->prompt_is_ids = true;
    } else {
      return TypeError("prompt", "a non-empty string or a non-empty array of token ids");
    }
  }
  for (const char* f : {"max_tokens", "max_completion_tokens"}) {
    if (!body.contains(f) || body[f].is_null()) continue;
    if (!body[f].is_number_integer() || body[f].get<int64_t>() < 1) {
      return TypeError(f, "an integer >= 1");
    }
    out->max_tokens = body[f].get<int64_t>();
  }
  if (body.contains("n") && !body["n"].is_null()) {
    if (!body["n"].is_number_integer() || body["n"].get<int64_t>() != 1) {
      return ApiError::BadRequest("only 'n' = 1 is supported", "n");
    }
  }
  if (body.contains("temperature") && !body["temperature"].is_null()) {
    const json& t = body["temperature"];
    if (!t.is_number() || t.get<double>() < 0 || t.get<double>() > 2) {
      return TypeError("temperature", "a number in [0, 2]");
    }
    out->sampling.temperature = t.get<float>();
  }
  if (body.contains("top_p") && !body["top_p"].is_null()) {
    const json& t = body["top_p"];
    if (!t.is_number() || !(t.get<double>() > 0) || t.get<double>() > 1) {
      return TypeError("top_p", "a number in (0, 1]");
    }
    out->sampling.top_p = t.get<float>();
  }
  if (body.contains("seed") && !body["seed"].is_null()) {
    if (!body["seed"].is_number_integer()) return TypeError("seed", "an integer");
    out->sampling.seed = static_cast<uint64_t>(body["seed"].get<int64_t>());
    out->seed_given = true;
  }
  if (body.contains("stop") && !body["stop"].is_null()) {
    const json& s = body["stop"];
    if (s.is_string()) {
      out->stop.push_back(s);
    } else if (s.is_array() && s.size() <= 4) {
      for (const json& x : s) {
        if (!x.is_string()) return TypeError("stop", "a string or an array of up to 4 strings");
        out->stop.push_back(x);
      }
    } else {
      return TypeError("stop", "a string or an array of up to 4 strings");
    }
  }
  if (body.contains("stream") && !body["stream"].is_null()) {
    if (!body["stream"].is_boolean()) return TypeError("stream", "a boolean");
    out->stream = body["stream"];
  }
  if (body.contains("stream_options") && !body["stream_options"].is_null()) {
    const json& so = body["stream_options"];
    if (!so.is_object()) return TypeError("stream_options", "an object");
    if (so.contains("include_usage")) {
      if (!so["include_usage"].is_boolean()) {
        return TypeError("stream_options.include_usage", "a boolean");
      }
      out->include_usage = so["include_usage"];
    }
  }
  if (body.contains("return_token_ids") && !body["return_token_ids"].is_null()) {
    if (!body["return_token_ids"].is_boolean()) return TypeError("return_token_ids", "a boolean");
    out->return_token_ids = body["return_token_ids"].get<bool>();
  }
  if (body.contains("ckv_budget") && !body["ckv_budget"].is_null()) {
    const json& b = body["ckv_budget"];
    if (!b.is_number() || !(b.get<double>() > 0) || b.get<double>() > 1 ||
        !std::isfinite(b.get<double>())) {
      return TypeError("ckv_budget", "a number r with 0 < r <= 1");
    }
    out->budget = b.get<double>();
  }
  if (body.contains("ckv_store") && !body["ckv_store"].is_null()) {
    if (!body["ckv_store"].is_boolean()) return TypeError("ckv_store", "a boolean");
    out->store = body["ckv_store"].get<bool>();
  }
  return std::nullopt;
}

std::optional<ApiError> ParseBody(const std::string& text, json* out) {
  // nlohmann parses and destroys deep documents without recursion, but copies them
  // recursively: a 200 KB body of nested brackets would overflow the stack later. Refuse them.
  constexpr int kMaxDepth = 64;
  bool too_deep = false;
  json::parser_callback_t depth_check = [&](int depth, json::parse_event_t, json&) {
    if (depth > kMaxDepth) too_deep = true;
    return !too_deep;
  };
  *out = json::parse(text, depth_check, /*allow_exceptions=*/false);
  if (too_deep) {
    return ApiError::BadRequest("the request body nests deeper than " + std::to_string(kMaxDepth) +
                                " levels");
  }
  if (out->is_discarded()) return ApiError::BadRequest("malformed JSON body");
  if (!out->is_object()) return ApiError::BadRequest("the request body must be a JSON object");
  return std::nullopt;
}

}  // namespace ckv::server
