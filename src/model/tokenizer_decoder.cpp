#include "model/tokenizer_decoder.h"

#include <utility>

#include "model/tokenizer_byte_level.h"
#include "model/tokenizer_unicode.h"

namespace ckv::tokenizer {
namespace {

constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";

std::string ReplaceAll(const std::string& text, const std::string& pattern,
                       const std::string& with) {
  std::string out;
  size_t pos = 0;
  while (true) {
    const size_t hit = text.find(pattern, pos);
    if (hit == std::string::npos) break;
    out.append(text, pos, hit - pos).append(with);
    pos = hit + pattern.size();
  }
  out.append(text, pos);
  return out;
}

// "<0xAB>" -> 0xAB, or -1.
int ByteFallbackValue(const std::string& token) {
  if (token.size() != 6 || !token.starts_with("<0x") || token[5] != '>') return -1;
  int value = 0;
  for (size_t i = 3; i < 5; ++i) {
    const char c = token[i];
    int digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'A' && c <= 'F') {
      digit = c - 'A' + 10;
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else {
      return -1;
    }
    value = value * 16 + digit;
  }
  return value;
}

// HF ByteFallback: a run of byte tokens becomes its UTF-8 string when valid, else one
// U+FFFD per byte token.
void FlushBytes(std::string* bytes, size_t count, std::vector<std::string>* out) {
  if (count == 0) return;
  if (!FindInvalidUtf8(*bytes)) {
    out->push_back(std::move(*bytes));
  } else {
    for (size_t i = 0; i < count; ++i) out->emplace_back(kReplacementChar);
  }
  bytes->clear();
}

std::vector<std::string> ApplyByteFallback(std::vector<std::string> tokens) {
  std::vector<std::string> out;
  out.reserve(tokens.size());
  std::string bytes;
  size_t count = 0;
  for (std::string& token : tokens) {
    const int value = ByteFallbackValue(token);
    if (value >= 0) {
      bytes.push_back(static_cast<char>(value));
      ++count;
      continue;
    }
    FlushBytes(&bytes, count, &out);
    count = 0;
    out.push_back(std::move(token));
  }
  FlushBytes(&bytes, count, &out);
  return out;
}

std::string StripToken(const std::string& token, char32_t ch, size_t start, size_t stop) {
  std::vector<size_t> offsets;  // Byte offset of each character, plus the end.
  for (size_t pos = 0; pos < token.size();) {
    offsets.push_back(pos);
    pos += Utf8SequenceLength(static_cast<unsigned char>(token[pos]));
  }
  offsets.push_back(token.size());
  const size_t chars = offsets.size() - 1;
  auto char_at = [&](size_t i) {
    size_t pos = offsets[i];
    return DecodeUtf8(token, &pos);
  };
  size_t first = 0;
  while (first < start && first < chars && char_at(first) == ch) ++first;
  size_t last = chars;
  while (chars - last < stop && last > first && char_at(last - 1) == ch) --last;
  return token.substr(offsets[first], offsets[last] - offsets[first]);
}

}  // namespace

Result<Decoder> Decoder::FromJson(const Json* json, const JsonContext& ctx) {
  Decoder decoder;
  if (json != nullptr) {
    decoder.has_decoder_ = true;
    CKV_RETURN_IF_ERROR(AddSteps(*json, ctx, &decoder.steps_));
  }
  return decoder;
}

Status Decoder::AddSteps(const Json& json, const JsonContext& ctx, std::vector<Step>* steps) {
  CKV_ASSIGN_OR_RETURN(const std::string type, RequiredString(json, "type", ctx));
  if (type == "Sequence") {
    const JsonContext list_ctx = ctx.Child("decoders");
    CKV_ASSIGN_OR_RETURN(const Json* list, RequiredMember(json, "decoders", ctx));
    CKV_RETURN_IF_ERROR(ExpectArray(*list, list_ctx));
    for (size_t i = 0; i < list->size(); ++i) {
      CKV_RETURN_IF_ERROR(AddSteps((*list)[i], list_ctx.Index(i), steps));
    }
    return Status::OK();
  }
  Step step{};
  if (type == "Replace") {
    step.kind = Step::Kind::kReplace;
    const JsonContext pattern_ctx = ctx.Child("pattern");
    CKV_ASSIGN_OR_RETURN(const Json* pattern, RequiredMember(json, "pattern", ctx));
    CKV_RETURN_IF_ERROR(ExpectObject(*pattern, pattern_ctx));
    if (OptionalMember(*pattern, "String") == nullptr) {
      return pattern_ctx.Unsupported(pattern->dump());
    }
    CKV_ASSIGN_OR_RETURN(step.pattern, RequiredString(*pattern, "String", pattern_ctx));
    if (step.pattern.empty()) return pattern_ctx.Child("String").Invalid("must not be empty");
    CKV_ASSIGN_OR_RETURN(step.content, RequiredString(json, "content", ctx));
  } else if (type == "ByteFallback") {
    step.kind = Step::Kind::kByteFallback;
  } else if (type == "Fuse") {
    step.kind = Step::Kind::kFuse;
  } else if (type == "Strip") {
    step.kind = Step::Kind::kStrip;
    CKV_ASSIGN_OR_RETURN(step.content, RequiredString(json, "content", ctx));
    if (step.content.empty() ||
        Utf8SequenceLength(static_cast<unsigned char>(step.content[0])) != step.content.size()) {
      return ctx.Child("content").Invalid("must be a single character");
    }
    CKV_ASSIGN_OR_RETURN(const int64_t start, RequiredInt(json, "start", ctx));
    CKV_ASSIGN_OR_RETURN(const int64_t stop, RequiredInt(json, "stop", ctx));
    if (start < 0 || stop < 0) return ctx.Invalid("start/stop must not be negative");
    step.start = static_cast<size_t>(start);
    step.stop = static_cast<size_t>(stop);
  } else if (type == "ByteLevel") {
    step.kind = Step::Kind::kByteLevel;
  } else {
    return ctx.Child("type").Unsupported(type);
  }
  steps->push_back(std::move(step));
  return Status::OK();
}

std::string Decoder::Decode(std::vector<std::string> tokens) const {
  if (!has_decoder_) {
    std::string joined;
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i > 0) joined.push_back(' ');
      joined.append(tokens[i]);
    }
    return joined;
  }
  for (const Step& step : steps_) {
    switch (step.kind) {
      case Step::Kind::kReplace:
        for (std::string& token : tokens) token = ReplaceAll(token, step.pattern, step.content);
        break;
      case Step::Kind::kByteFallback:
        tokens = ApplyByteFallback(std::move(tokens));
        break;
      case Step::Kind::kFuse: {
        std::string fused;
        for (const std::string& token : tokens) fused.append(token);
        tokens.assign(1, std::move(fused));
        break;
      }
      case Step::Kind::kStrip: {
        size_t pos = 0;
        const char32_t ch = DecodeUtf8(step.content, &pos);
        for (std::string& token : tokens) token = StripToken(token, ch, step.start, step.stop);
        break;
      }
      case Step::Kind::kByteLevel: {
        // All tokens' bytes together, then lossy UTF-8 (String::from_utf8_lossy in HF).
        std::string bytes;
        for (const std::string& token : tokens) AppendByteLevelDecoded(token, &bytes);
        tokens.assign(1, Utf8Lossy(bytes));
        break;
      }
    }
  }
  std::string out;
  for (const std::string& token : tokens) out.append(token);
  return out;
}

}  // namespace ckv::tokenizer
