#include "model/tokenizer_normalizer.h"

#include "model/tokenizer_unicode.h"

namespace ckv::tokenizer {
namespace {

std::string ReplaceAll(std::string_view text, std::string_view pattern, std::string_view with) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (true) {
    const size_t hit = text.find(pattern, pos);
    if (hit == std::string_view::npos) break;
    out.append(text.substr(pos, hit - pos));
    out.append(with);
    pos = hit + pattern.size();
  }
  out.append(text.substr(pos));
  return out;
}

}  // namespace

Result<Normalizer> Normalizer::FromJson(const Json* json, const JsonContext& ctx) {
  Normalizer normalizer;
  if (json != nullptr) CKV_RETURN_IF_ERROR(AddSteps(*json, ctx, &normalizer.steps_));
  return normalizer;
}

Status Normalizer::AddSteps(const Json& json, const JsonContext& ctx, std::vector<Step>* steps) {
  CKV_ASSIGN_OR_RETURN(const std::string type, RequiredString(json, "type", ctx));
  if (type == "Sequence") {
    const JsonContext list_ctx = ctx.Child("normalizers");
    CKV_ASSIGN_OR_RETURN(const Json* list, RequiredMember(json, "normalizers", ctx));
    CKV_RETURN_IF_ERROR(ExpectArray(*list, list_ctx));
    for (size_t i = 0; i < list->size(); ++i) {
      CKV_RETURN_IF_ERROR(AddSteps((*list)[i], list_ctx.Index(i), steps));
    }
    return Status::OK();
  }
  if (type == "Prepend") {
    CKV_ASSIGN_OR_RETURN(std::string prepend, RequiredString(json, "prepend", ctx));
    steps->push_back(Step{Step::Kind::kPrepend, "", std::move(prepend)});
    return Status::OK();
  }
  if (type == "Replace") {
    const JsonContext pattern_ctx = ctx.Child("pattern");
    CKV_ASSIGN_OR_RETURN(const Json* pattern, RequiredMember(json, "pattern", ctx));
    CKV_RETURN_IF_ERROR(ExpectObject(*pattern, pattern_ctx));
    if (OptionalMember(*pattern, "String") == nullptr) {
      return pattern_ctx.Unsupported(pattern->dump());
    }
    CKV_ASSIGN_OR_RETURN(std::string from, RequiredString(*pattern, "String", pattern_ctx));
    if (from.empty()) return pattern_ctx.Child("String").Invalid("must not be empty");
    CKV_ASSIGN_OR_RETURN(std::string to, RequiredString(json, "content", ctx));
    steps->push_back(Step{Step::Kind::kReplace, std::move(from), std::move(to)});
    return Status::OK();
  }
  if (type == "NFC") {
    steps->push_back(Step{Step::Kind::kNfc, "", ""});
    return Status::OK();
  }
  return ctx.Child("type").Unsupported(type);
}

Result<std::string> Normalizer::Apply(std::string_view text) const {
  std::string out(text);
  for (const Step& step : steps_) {
    switch (step.kind) {
      case Step::Kind::kPrepend:
        // HF's Prepend leaves an empty string empty.
        if (!out.empty()) out.insert(0, step.content);
        break;
      case Step::Kind::kReplace:
        out = ReplaceAll(out, step.pattern, step.content);
        break;
      case Step::Kind::kNfc: {
        CKV_ASSIGN_OR_RETURN(out, NormalizeNfc(out));
        break;
      }
    }
  }
  return out;
}

}  // namespace ckv::tokenizer
