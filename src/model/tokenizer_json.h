// Reading tokenizer.json / tokenizer_config.json (plain or gzip-compressed) and small
// checked accessors, so that every malformed or unsupported field becomes a Status naming
// the file and the field instead of an exception.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "ckv/status.h"

namespace ckv::tokenizer {

using Json = nlohmann::json;

// Reads and parses a JSON file; gzip data (by its magic bytes) is decompressed first.
Result<Json> ReadJsonFile(const std::string& path);

// Where a value sits, for messages: file + dotted field path ("pre_tokenizer.pattern").
struct JsonContext {
  const std::string& file;
  std::string field;

  JsonContext Child(std::string_view key) const;
  JsonContext Index(size_t i) const;
  // "<file>: <field> <what>"
  Status Invalid(std::string_view what) const;
  // "<file>: <field> "<value>" is not supported"
  Status Unsupported(std::string_view value) const;
};

// Member lookups; `obj` must be an object (checked). Missing or null members give nullopt
// for the Optional* variants and an error for the required ones.
Result<const Json*> RequiredMember(const Json& obj, std::string_view key, const JsonContext& ctx);
const Json* OptionalMember(const Json& obj, std::string_view key);
Result<std::string> RequiredString(const Json& obj, std::string_view key, const JsonContext& ctx);
Result<std::optional<std::string>> OptionalString(const Json& obj, std::string_view key,
                                                  const JsonContext& ctx);
Result<bool> OptionalBool(const Json& obj, std::string_view key, bool default_value,
                          const JsonContext& ctx);
Result<int64_t> RequiredInt(const Json& obj, std::string_view key, const JsonContext& ctx);
Status ExpectObject(const Json& value, const JsonContext& ctx);
Status ExpectArray(const Json& value, const JsonContext& ctx);

}  // namespace ckv::tokenizer
