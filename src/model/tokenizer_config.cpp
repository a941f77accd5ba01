#include "model/tokenizer_config.h"

namespace ckv::tokenizer {
namespace {

// A token may be written as "<s>", as {"content": "<s>", ...} (a serialized AddedToken),
// or as null.
Status ParseTokenName(const Json& json, std::string_view key, const JsonContext& ctx, bool* present,
                      std::optional<std::string>* name) {
  const auto it = json.find(key);
  *present = it != json.end();
  if (!*present || it->is_null()) return Status::OK();
  const JsonContext field = ctx.Child(key);
  if (it->is_string()) {
    *name = it->get<std::string>();
    return Status::OK();
  }
  if (it->is_object()) {
    CKV_ASSIGN_OR_RETURN(*name, RequiredString(*it, "content", field));
    return Status::OK();
  }
  return field.Invalid("must be a string, an object with \"content\", or null");
}

Status ParseOptionalBool(const Json& json, std::string_view key, const JsonContext& ctx,
                         std::optional<bool>* out) {
  const Json* value = OptionalMember(json, key);
  if (value == nullptr) return Status::OK();
  if (!value->is_boolean()) return ctx.Child(key).Invalid("must be a boolean");
  *out = value->get<bool>();
  return Status::OK();
}

}  // namespace

Result<TokenizerConfig> ParseTokenizerConfig(const Json& json, const std::string& path) {
  const JsonContext ctx{path, ""};
  CKV_RETURN_IF_ERROR(ExpectObject(json, ctx));
  TokenizerConfig config;
  CKV_RETURN_IF_ERROR(ParseOptionalBool(json, "add_bos_token", ctx, &config.add_bos_token));
  CKV_RETURN_IF_ERROR(ParseOptionalBool(json, "add_eos_token", ctx, &config.add_eos_token));
  CKV_RETURN_IF_ERROR(
      ParseTokenName(json, "bos_token", ctx, &config.has_bos_token, &config.bos_token));
  CKV_RETURN_IF_ERROR(
      ParseTokenName(json, "eos_token", ctx, &config.has_eos_token, &config.eos_token));
  return config;
}

}  // namespace ckv::tokenizer
