// JSON in and out of the interpreter. Inputs arrive as nlohmann::ordered_json so that key
// order survives (Hugging Face hands Python dicts, which keep insertion order, to the
// template); `tojson` writes Python's json.dumps format byte for byte (", " and ": "
// separators, repr() floats, ensure_ascii off as Hugging Face sets it).
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "chat/jinja_value.h"

namespace ckv::jinja {

// Fails only on nesting deeper than kMaxValueDepth.
Result<Value> FromJson(const nlohmann::ordered_json& json);

struct JsonDumpOptions {
  std::optional<std::string> indent;  // json.dumps(indent=...): the per-level indent string
  std::string item_separator = ", ";
  std::string key_separator = ": ";
  bool sort_keys = false;
  bool ensure_ascii = false;
};

// json.dumps(value, ...); a TypeError for what JSON cannot hold (Undefined, namespaces).
Result<std::string> ToJson(const Value& value, const JsonDumpOptions& options);

}  // namespace ckv::jinja
