// The tokenizer.json "pre_tokenizer": regex Split steps (PCRE2, JIT-compiled) and the
// ByteLevel step, which marks pieces as byte-level (each byte becomes one initial BPE
// symbol) and, with use_regex, first splits with the GPT-2 pattern.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "model/tokenizer_json.h"

namespace ckv::tokenizer {

// Byte range [first, second) of a piece within the pre-tokenized text.
using PieceRange = std::pair<size_t, size_t>;

// One compiled pattern; copies share the (immutable) compiled code.
class RegexSplitter {
 public:
  // `literal`: the pattern is a plain string. `remove_matches`: HF behavior "Removed"
  // (matches dropped) instead of "Isolated" (matches kept as their own pieces).
  static Result<RegexSplitter> Create(std::string_view pattern, bool literal, bool remove_matches);
  // Appends the pieces of text[range] (valid UTF-8); gaps between matches are pieces too.
  Status Split(std::string_view text, PieceRange range, std::vector<PieceRange>* out) const;

 private:
  struct Code;
  std::shared_ptr<const Code> code_;
  bool remove_matches_ = false;
};

// Oniguruma (which HF tokenizers uses) folds ASCII letters only to ASCII letters, whereas
// PCRE2 10.42 also lets 's' match U+017F and 'k' match U+212A under (?i). Rewrites each
// "(?i:" group made of literals and '|' into case-explicit classes ("(?i:'s)" ->
// "(?:'[sS])"); other patterns are returned unchanged.
std::string RestrictCaselessGroupsToAscii(std::string_view pattern);

class PreTokenizer {
 public:
  // `json` may be null (the whole text is one piece).
  static Result<PreTokenizer> FromJson(const Json* json, const JsonContext& ctx);

  bool byte_level() const { return byte_level_; }
  // Splits `text` into pieces; empty text gives no pieces.
  Status Split(std::string_view text, std::vector<PieceRange>* pieces) const;

 private:
  Status AddSteps(const Json& json, const JsonContext& ctx);

  std::vector<RegexSplitter> splits_;
  bool byte_level_ = false;
};

}  // namespace ckv::tokenizer
