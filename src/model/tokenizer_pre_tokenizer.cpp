#define PCRE2_CODE_UNIT_WIDTH 8
#include "model/tokenizer_pre_tokenizer.h"

#include <pcre2.h>

#include <algorithm>
#include <cstring>

#include "model/tokenizer_unicode.h"

namespace ckv::tokenizer {
namespace {

// The pattern HF's ByteLevel pre-tokenizer uses when use_regex is true (GPT-2).
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

std::string Pcre2ErrorText(int code) {
  PCRE2_UCHAR buffer[256];
  if (pcre2_get_error_message(code, buffer, sizeof(buffer)) < 0) {
    return "PCRE2 error " + std::to_string(code);
  }
  return reinterpret_cast<const char*>(buffer);
}

struct MatchDataDeleter {
  void operator()(pcre2_match_data* md) const { pcre2_match_data_free(md); }
};
struct MatchContextDeleter {
  void operator()(pcre2_match_context* mc) const { pcre2_match_context_free(mc); }
};
struct JitStackDeleter {
  void operator()(pcre2_jit_stack* js) const { pcre2_jit_stack_free(js); }
};

}  // namespace

struct RegexSplitter::Code {
  pcre2_code* code = nullptr;
  ~Code() { pcre2_code_free(code); }
};

Result<RegexSplitter> RegexSplitter::Create(std::string_view pattern, bool literal,
                                            bool remove_matches) {
  auto code = std::make_shared<Code>();
  const std::string rewritten =
      literal ? std::string(pattern) : RestrictCaselessGroupsToAscii(pattern);
  int error = 0;
  PCRE2_SIZE offset = 0;
  const uint32_t options = PCRE2_UTF | PCRE2_UCP | (literal ? PCRE2_LITERAL : 0);
  code->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(rewritten.data()), rewritten.size(),
                             options, &error, &offset, nullptr);
  if (code->code == nullptr) {
    return Status::InvalidArgument("cannot compile pattern at offset " + std::to_string(offset) +
                                   ": " + Pcre2ErrorText(error));
  }
  // Without JIT support pcre2_match falls back to the interpreter, so a failure here
  // only costs speed.
  (void)pcre2_jit_compile(code->code, PCRE2_JIT_COMPLETE);
  RegexSplitter splitter;
  splitter.code_ = std::move(code);
  splitter.remove_matches_ = remove_matches;
  return splitter;
}

Status RegexSplitter::Split(std::string_view text, PieceRange range,
                            std::vector<PieceRange>* out) const {
  std::unique_ptr<pcre2_match_data, MatchDataDeleter> md(
      pcre2_match_data_create_from_pattern(code_->code, nullptr));
  if (md == nullptr) return Status::Internal("out of memory for PCRE2 match data");
  // Created only if the default 32 KiB JIT stack overflows (very long runs).
  std::unique_ptr<pcre2_match_context, MatchContextDeleter> big_context;
  std::unique_ptr<pcre2_jit_stack, JitStackDeleter> big_stack;

  // The piece is matched as a string of its own, as HF does: lookarounds and anchors do
  // not see past its ends.
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data() + range.first);
  const size_t length = range.second - range.first;
  size_t pos = 0;
  size_t emitted = 0;
  while (pos < length) {
    const int rc = pcre2_match(code_->code, subject, length, pos, PCRE2_NO_UTF_CHECK, md.get(),
                               big_context.get());
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT && big_context == nullptr) {
      big_context.reset(pcre2_match_context_create(nullptr));
      big_stack.reset(pcre2_jit_stack_create(1 << 16, 64 << 20, nullptr));
      if (big_context == nullptr || big_stack == nullptr) {
        return Status::Internal("out of memory for the PCRE2 JIT stack");
      }
      pcre2_jit_stack_assign(big_context.get(), nullptr, big_stack.get());
      continue;
    }
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) return Status::Internal("pre-tokenizer regex: " + Pcre2ErrorText(rc));
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(md.get());
    const size_t match_begin = ovector[0];
    const size_t match_end = ovector[1];
    if (match_end == match_begin) {
      // An empty match splits nothing; step over one character to make progress.
      pos += Utf8SequenceLength(subject[pos]);
      continue;
    }
    if (match_begin > emitted) out->emplace_back(range.first + emitted, range.first + match_begin);
    if (!remove_matches_) out->emplace_back(range.first + match_begin, range.first + match_end);
    emitted = match_end;
    pos = match_end;
  }
  if (emitted < length) out->emplace_back(range.first + emitted, range.second);
  return Status::OK();
}

std::string RestrictCaselessGroupsToAscii(std::string_view pattern) {
  std::string out;
  out.reserve(pattern.size() + 32);
  size_t i = 0;
  while (i < pattern.size()) {
    const char c = pattern[i];
    if (c == '\\') {  // Escapes are copied whole so "\(" is not taken for a group.
      out.append(pattern.substr(i, 2));
      i += 2;
      continue;
    }
    if (c == '[') {  // Character classes are copied whole.
      size_t j = i + 1;
      if (j < pattern.size() && pattern[j] == '^') ++j;
      if (j < pattern.size() && pattern[j] == ']') ++j;  // A leading ']' is literal.
      while (j < pattern.size() && pattern[j] != ']') j += pattern[j] == '\\' ? 2 : 1;
      j = std::min(j + 1, pattern.size());
      out.append(pattern.substr(i, j - i));
      i = j;
      continue;
    }
    if (pattern.substr(i).starts_with("(?i:")) {
      const size_t body_begin = i + 4;
      size_t j = body_begin;
      bool simple = true;
      while (j < pattern.size() && pattern[j] != ')') {
        if (std::strchr("\\[](){}*+?.^$#", pattern[j]) != nullptr) simple = false;
        ++j;
      }
      if (simple && j < pattern.size()) {
        out.append("(?:");
        size_t k = body_begin;
        while (k < j) {
          const auto b = static_cast<unsigned char>(pattern[k]);
          if (b >= 0x80) {  // Non-ASCII keeps Unicode caseless matching, on its own.
            const size_t len = Utf8SequenceLength(b);
            out.append("(?i:").append(pattern.substr(k, len)).append(")");
            k += len;
            continue;
          }
          if ((b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z')) {
            const char lower = static_cast<char>(b | 0x20);
            out.append({'[', lower, static_cast<char>(lower - 0x20), ']'});
          } else {
            out.push_back(static_cast<char>(b));
          }
          ++k;
        }
        out.push_back(')');
        i = j + 1;
        continue;
      }
    }
    out.push_back(c);
    ++i;
  }
  return out;
}

Result<PreTokenizer> PreTokenizer::FromJson(const Json* json, const JsonContext& ctx) {
  PreTokenizer pre;
  if (json != nullptr) CKV_RETURN_IF_ERROR(pre.AddSteps(*json, ctx));
  return pre;
}

Status PreTokenizer::AddSteps(const Json& json, const JsonContext& ctx) {
  CKV_ASSIGN_OR_RETURN(const std::string type, RequiredString(json, "type", ctx));
  if (byte_level_) {
    // Anything after ByteLevel would see the byte alphabet, not the text.
    return ctx.Invalid("follows a ByteLevel pre-tokenizer, which is not supported");
  }
  if (type == "Sequence") {
    const JsonContext list_ctx = ctx.Child("pretokenizers");
    CKV_ASSIGN_OR_RETURN(const Json* list, RequiredMember(json, "pretokenizers", ctx));
    CKV_RETURN_IF_ERROR(ExpectArray(*list, list_ctx));
    for (size_t i = 0; i < list->size(); ++i) {
      CKV_RETURN_IF_ERROR(AddSteps((*list)[i], list_ctx.Index(i)));
    }
    return Status::OK();
  }
  if (type == "Split") {
    CKV_ASSIGN_OR_RETURN(const bool invert, OptionalBool(json, "invert", false, ctx));
    if (invert) return ctx.Child("invert").Unsupported("true");
    std::string behavior;  // Declared apart: GCC 12 warns falsely on the one-line form.
    CKV_ASSIGN_OR_RETURN(behavior, RequiredString(json, "behavior", ctx));
    if (behavior != "Isolated" && behavior != "Removed") {
      return ctx.Child("behavior").Unsupported(behavior);
    }
    const JsonContext pattern_ctx = ctx.Child("pattern");
    CKV_ASSIGN_OR_RETURN(const Json* pattern, RequiredMember(json, "pattern", ctx));
    CKV_RETURN_IF_ERROR(ExpectObject(*pattern, pattern_ctx));
    const bool literal = OptionalMember(*pattern, "String") != nullptr;
    if (!literal && OptionalMember(*pattern, "Regex") == nullptr) {
      return pattern_ctx.Invalid("must have a \"Regex\" or \"String\" member");
    }
    CKV_ASSIGN_OR_RETURN(const std::string text,
                         RequiredString(*pattern, literal ? "String" : "Regex", pattern_ctx));
    auto splitter = RegexSplitter::Create(text, literal, behavior == "Removed");
    if (!splitter.ok()) {
      return pattern_ctx.Invalid(splitter.status().message());
    }
    splits_.push_back(std::move(splitter).value());
    return Status::OK();
  }
  if (type == "ByteLevel") {
    CKV_ASSIGN_OR_RETURN(const bool prefix_space,
                         OptionalBool(json, "add_prefix_space", true, ctx));
    if (prefix_space) return ctx.Child("add_prefix_space").Unsupported("true");
    CKV_ASSIGN_OR_RETURN(const bool use_regex, OptionalBool(json, "use_regex", true, ctx));
    if (use_regex) {
      CKV_ASSIGN_OR_RETURN(auto splitter, RegexSplitter::Create(kGpt2Pattern, false, false));
      splits_.push_back(std::move(splitter));
    }
    byte_level_ = true;
    return Status::OK();
  }
  return ctx.Child("type").Unsupported(type);
}

Status PreTokenizer::Split(std::string_view text, std::vector<PieceRange>* pieces) const {
  pieces->clear();
  if (text.empty()) return Status::OK();
  pieces->emplace_back(0, text.size());
  std::vector<PieceRange> next;
  for (const RegexSplitter& splitter : splits_) {
    next.clear();
    for (const PieceRange& range : *pieces) CKV_RETURN_IF_ERROR(splitter.Split(text, range, &next));
    pieces->swap(next);
  }
  return Status::OK();
}

}  // namespace ckv::tokenizer
