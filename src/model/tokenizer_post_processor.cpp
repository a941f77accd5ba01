#include "model/tokenizer_post_processor.h"

#include <climits>

namespace ckv::tokenizer {
namespace {

Status AddTemplate(const Json& json, const JsonContext& ctx, PostProcessor* post) {
  const JsonContext single_ctx = ctx.Child("single");
  CKV_ASSIGN_OR_RETURN(const Json* single, RequiredMember(json, "single", ctx));
  CKV_RETURN_IF_ERROR(ExpectArray(*single, single_ctx));
  const Json* specials = OptionalMember(json, "special_tokens");
  bool seen_sequence = false;
  for (size_t i = 0; i < single->size(); ++i) {
    const Json& item = (*single)[i];
    const JsonContext item_ctx = single_ctx.Index(i);
    CKV_RETURN_IF_ERROR(ExpectObject(item, item_ctx));
    if (const Json* seq = OptionalMember(item, "Sequence")) {
      CKV_ASSIGN_OR_RETURN(const std::string id,
                           RequiredString(*seq, "id", item_ctx.Child("Sequence")));
      if (id != "A" || seen_sequence) {
        return item_ctx.Invalid("must reference sequence A exactly once");
      }
      seen_sequence = true;
      continue;
    }
    const Json* special = OptionalMember(item, "SpecialToken");
    if (special == nullptr) return item_ctx.Invalid("must be a SpecialToken or a Sequence");
    const JsonContext special_ctx = item_ctx.Child("SpecialToken");
    CKV_ASSIGN_OR_RETURN(const std::string name, RequiredString(*special, "id", special_ctx));
    const Json* entry = specials == nullptr ? nullptr : OptionalMember(*specials, name);
    if (entry == nullptr) {
      return special_ctx.Invalid("\"" + name + "\" is not defined in special_tokens");
    }
    const JsonContext entry_ctx = ctx.Child("special_tokens").Child(name);
    CKV_ASSIGN_OR_RETURN(const Json* ids, RequiredMember(*entry, "ids", entry_ctx));
    CKV_RETURN_IF_ERROR(ExpectArray(*ids, entry_ctx.Child("ids")));
    for (const Json& id : *ids) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= INT32_MAX) {
        return entry_ctx.Child("ids").Invalid("must hold non-negative integer ids");
      }
      (seen_sequence ? post->suffix : post->prefix).push_back(id.get<int32_t>());
    }
  }
  if (!seen_sequence) return single_ctx.Invalid("does not reference sequence A");
  return Status::OK();
}

Status AddProcessor(const Json& json, const JsonContext& ctx, PostProcessor* post) {
  CKV_ASSIGN_OR_RETURN(const std::string type, RequiredString(json, "type", ctx));
  if (type == "Sequence") {
    const JsonContext list_ctx = ctx.Child("processors");
    CKV_ASSIGN_OR_RETURN(const Json* list, RequiredMember(json, "processors", ctx));
    CKV_RETURN_IF_ERROR(ExpectArray(*list, list_ctx));
    for (size_t i = 0; i < list->size(); ++i) {
      CKV_RETURN_IF_ERROR(AddProcessor((*list)[i], list_ctx.Index(i), post));
    }
    return Status::OK();
  }
  if (type == "ByteLevel") return Status::OK();  // Only adjusts offsets, which we do not keep.
  if (type == "TemplateProcessing") {
    if (!post->prefix.empty() || !post->suffix.empty()) {
      return ctx.Invalid("adds special tokens twice, which is not supported");
    }
    return AddTemplate(json, ctx, post);
  }
  return ctx.Child("type").Unsupported(type);
}

}  // namespace

Result<PostProcessor> ParsePostProcessor(const Json* json, const JsonContext& ctx) {
  PostProcessor post;
  if (json != nullptr) CKV_RETURN_IF_ERROR(AddProcessor(*json, ctx, &post));
  return post;
}

}  // namespace ckv::tokenizer
