#include "model/tokenizer_added_tokens.h"

#include <algorithm>
#include <climits>

#include "model/tokenizer_unicode.h"

namespace ckv::tokenizer {
namespace {

// The last code point of non-empty valid UTF-8 text.
char32_t LastCodePoint(std::string_view text) {
  size_t pos = text.size() - 1;
  while (pos > 0 && (static_cast<unsigned char>(text[pos]) & 0xC0) == 0x80) --pos;
  return DecodeUtf8(text, &pos);
}

// Start of the run of whitespace that ends `text` (text.size() when there is none).
size_t LeadingEdgeOfTrailingSpace(std::string_view text) {
  size_t edge = text.size();
  while (edge > 0) {
    size_t pos = edge - 1;
    while (pos > 0 && (static_cast<unsigned char>(text[pos]) & 0xC0) == 0x80) --pos;
    size_t probe = pos;
    if (!IsWhitespace(DecodeUtf8(text, &probe))) break;
    edge = pos;
  }
  return edge;
}

// Length of the run of whitespace that starts `text`.
size_t LeadingSpaceLength(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t next = pos;
    if (!IsWhitespace(DecodeUtf8(text, &next))) break;
    pos = next;
  }
  return pos;
}

}  // namespace

Result<std::vector<AddedToken>> ParseAddedTokens(const Json& array, const JsonContext& ctx) {
  CKV_RETURN_IF_ERROR(ExpectArray(array, ctx));
  std::vector<AddedToken> tokens;
  tokens.reserve(array.size());
  for (size_t i = 0; i < array.size(); ++i) {
    const Json& item = array[i];
    const JsonContext item_ctx = ctx.Index(i);
    CKV_RETURN_IF_ERROR(ExpectObject(item, item_ctx));
    AddedToken token;
    CKV_ASSIGN_OR_RETURN(const int64_t id, RequiredInt(item, "id", item_ctx));
    if (id < 0 || id > INT32_MAX - 1) return item_ctx.Child("id").Invalid("is out of range");
    token.id = static_cast<int32_t>(id);
    CKV_ASSIGN_OR_RETURN(token.content, RequiredString(item, "content", item_ctx));
    CKV_ASSIGN_OR_RETURN(token.single_word, OptionalBool(item, "single_word", false, item_ctx));
    CKV_ASSIGN_OR_RETURN(token.lstrip, OptionalBool(item, "lstrip", false, item_ctx));
    CKV_ASSIGN_OR_RETURN(token.rstrip, OptionalBool(item, "rstrip", false, item_ctx));
    CKV_ASSIGN_OR_RETURN(token.normalized, OptionalBool(item, "normalized", false, item_ctx));
    CKV_ASSIGN_OR_RETURN(token.special, OptionalBool(item, "special", false, item_ctx));
    tokens.push_back(std::move(token));
  }
  return tokens;
}

AddedTokenMatcher::AddedTokenMatcher(const std::vector<AddedToken>& tokens, bool normalized) {
  for (const AddedToken& token : tokens) {
    // HF never matches an empty token.
    if (token.normalized == normalized && !token.content.empty()) tokens_.push_back(token);
  }
  for (size_t i = 0; i < tokens_.size(); ++i) {
    by_first_byte_[static_cast<unsigned char>(tokens_[i].content[0])].push_back(
        static_cast<int>(i));
  }
  for (auto& bucket : by_first_byte_) {
    std::stable_sort(bucket.begin(), bucket.end(), [this](int a, int b) {
      return tokens_[a].content.size() > tokens_[b].content.size();
    });
  }
}

int AddedTokenMatcher::LongestMatchAt(std::string_view text, size_t pos) const {
  for (const int index : by_first_byte_[static_cast<unsigned char>(text[pos])]) {
    if (text.substr(pos).starts_with(tokens_[index].content)) return index;
  }
  return -1;
}

void AddedTokenMatcher::Split(std::string_view text, std::vector<TextSpan>* out) const {
  size_t emitted = 0;  // End of what has been emitted so far.
  size_t pos = 0;
  while (pos < text.size()) {
    const int index = LongestMatchAt(text, pos);
    if (index < 0) {
      ++pos;
      continue;
    }
    const AddedToken& token = tokens_[index];
    size_t begin = pos;
    size_t end = pos + token.content.size();
    // Like HF (aho-corasick find_iter), the search resumes after the match even when
    // single_word rejects it.
    pos = end;
    if (token.single_word) {
      auto word_char = [](char32_t cp) { return cp == U'_' || IsAlphanumeric(cp); };
      const bool space_before = begin == 0 || !word_char(LastCodePoint(text.substr(0, begin)));
      size_t probe = end;
      const bool space_after = end == text.size() || !word_char(DecodeUtf8(text, &probe));
      if (!space_before || !space_after) continue;
    }
    if (token.lstrip) {
      begin = std::max(LeadingEdgeOfTrailingSpace(text.substr(0, begin)), emitted);
    }
    if (token.rstrip) end += LeadingSpaceLength(text.substr(end));
    if (begin > emitted) out->push_back(TextSpan{emitted, begin, -1});
    out->push_back(TextSpan{begin, end, token.id});
    emitted = end;
    pos = end;
  }
  if (emitted < text.size()) out->push_back(TextSpan{emitted, text.size(), -1});
}

}  // namespace ckv::tokenizer
