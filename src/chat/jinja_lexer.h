// Splits a template into tokens the way Jinja2 3.1's lexer does under Hugging Face's
// environment: trim_blocks and lstrip_blocks on, `-` / `+` whitespace control, comments
// dropped, {% raw %} passed through as text, newlines normalised to \n and one trailing
// newline removed (keep_trailing_newline=False). Whitespace handling decides every byte
// of a prompt, so it follows Jinja's regular expressions rule for rule.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ckv/status.h"

namespace ckv::jinja {

enum class TokenKind : uint8_t {
  kText,        // template data between tags
  kVarBegin,    // {{
  kVarEnd,      // }}
  kBlockBegin,  // {%
  kBlockEnd,    // %}
  kName,
  kString,  // text holds the unescaped value
  kInt,
  kFloat,
  kOperator,  // text holds the spelling: "+", "//", "(", ...
  kEof,
};

struct Token {
  TokenKind kind = TokenKind::kEof;
  int line = 1;
  std::string text;
  int64_t int_value = 0;
  double float_value = 0;
};

Result<std::vector<Token>> Tokenize(std::string_view source);

// "chat template line N: what" — the form of every error that points into the template.
Status TemplateError(int line, std::string_view what);
Status TemplateUnsupported(int line, std::string_view what);

}  // namespace ckv::jinja
