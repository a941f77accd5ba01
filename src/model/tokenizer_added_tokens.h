// Added tokens (tokenizer.json "added_tokens") and the Hugging Face AddedVocabulary
// splitting: occurrences in the text are found leftmost-longest, honouring single_word /
// lstrip / rstrip, and become their own token before any normalization or BPE.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "model/tokenizer_json.h"

namespace ckv::tokenizer {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
  bool special = false;
};

// Parses the tokenizer.json "added_tokens" array (ctx names it).
Result<std::vector<AddedToken>> ParseAddedTokens(const Json& array, const JsonContext& ctx);

// A piece of the input: either plain text [begin, end) or one added token (id >= 0) whose
// match, widened by lstrip/rstrip, covers [begin, end).
struct TextSpan {
  size_t begin = 0;
  size_t end = 0;
  int32_t added_id = -1;
};

class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  // Matches those of `tokens` whose `normalized` flag equals `normalized` (HF matches
  // normalized=false tokens in the raw text and normalized=true ones after normalization).
  AddedTokenMatcher(const std::vector<AddedToken>& tokens, bool normalized);

  bool empty() const { return tokens_.empty(); }
  // Appends the spans of `text` (valid UTF-8) in order; plain spans are never empty.
  void Split(std::string_view text, std::vector<TextSpan>* out) const;

 private:
  // Longest token matching at text[pos], or -1 (index into tokens_).
  int LongestMatchAt(std::string_view text, size_t pos) const;

  std::vector<AddedToken> tokens_;
  // Indices into tokens_ by first byte, longest first, so the first hit is the longest.
  std::array<std::vector<int>, 256> by_first_byte_;
};

}  // namespace ckv::tokenizer
