#include "chat/jinja_lexer.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include "chat/jinja_text.h"

namespace ckv::jinja {
namespace {

bool IsDigit(char c) {
  return c >= '0' && c <= '9';
}
bool IsNameStart(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
         static_cast<unsigned char>(c) >= 0x80;
}
bool IsNameChar(char c) {
  return IsNameStart(c) || IsDigit(c);
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Operators, longest first so that "//" wins over "/".
constexpr std::string_view kOperators[] = {"//", "**", "==", "!=", ">=", "<=", "+", "-", "/",
                                           "*",  "%",  "~",  "[",  "]",  "(",  ")", "{", "}",
                                           ">",  "<",  "=",  ".",  ":",  "|",  ",", ";"};

// Jinja2's source preprocessing: \r\n and \r become \n, one trailing newline goes.
std::string NormalizeSource(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out.push_back('\n');
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out.push_back(source[i]);
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

class Lexer {
 public:
  explicit Lexer(std::string_view source) : src_(NormalizeSource(source)) {
    line_starts_.push_back(0);
    for (size_t i = 0; i < src_.size(); ++i) {
      if (src_[i] == '\n') line_starts_.push_back(i + 1);
    }
  }

  Result<std::vector<Token>> Run() {
    while (pos_ < src_.size()) CKV_RETURN_IF_ERROR(LexData());
    Token eof;
    eof.kind = TokenKind::kEof;
    eof.line = LineOf(src_.size());
    tokens_.push_back(eof);
    return std::move(tokens_);
  }

 private:
  int LineOf(size_t pos) const {
    const auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), pos);
    return static_cast<int>(it - line_starts_.begin());
  }
  bool At(size_t pos, std::string_view s) const {
    return pos <= src_.size() && src_.compare(pos, s.size(), s) == 0;
  }
  size_t SkipWhitespace(size_t pos) const {
    while (size_t len = WhitespaceLength(src_, pos)) pos += len;
    return pos;
  }
  void Push(TokenKind kind, size_t pos, std::string text = {}) {
    Token t;
    t.kind = kind;
    t.line = LineOf(pos);
    t.text = std::move(text);
    tokens_.push_back(std::move(t));
  }

  // Text up to a tag, stripped the way the tag asks. `sign` is the tag's '-' or '+' (or 0);
  // lstrip_blocks applies to block and comment tags, never to {{.
  void PushText(size_t begin, size_t end, char sign, bool lstrip_applies) {
    std::string_view text(src_.data() + begin, end - begin);
    if (sign == '-') {
      text = text.substr(0, RStripWhitespaceLength(text));
    } else if (sign != '+' && lstrip_applies) {
      const size_t nl = text.rfind('\n');
      const size_t line_begin = nl == std::string_view::npos ? 0 : nl + 1;
      if (line_begin > 0 || line_starting_) {
        size_t p = line_begin;
        while (size_t len = WhitespaceLength(text, p)) p += len;
        if (p == text.size()) text = text.substr(0, line_begin);
      }
    }
    if (!text.empty()) Push(TokenKind::kText, begin, std::string(text));
  }

  // End of a tag's closing delimiter: "-%}" eats all following whitespace, "%}" one newline
  // (trim_blocks; `trim` false for {{ }} and {% raw %}), "+%}" nothing.
  size_t AfterClose(size_t close_begin, size_t close_len, char sign, bool trim) {
    size_t end = close_begin + close_len;
    if (sign == '-') {
      end = SkipWhitespace(end);
    } else if (sign != '+' && trim && end < src_.size() && src_[end] == '\n') {
      ++end;
    }
    line_starting_ = end > 0 && src_[end - 1] == '\n';
    return end;
  }

  Status LexData() {
    size_t tag = pos_;
    while (true) {
      tag = src_.find('{', tag);
      if (tag == std::string::npos || tag + 1 >= src_.size()) {
        PushText(pos_, src_.size(), 0, false);
        pos_ = src_.size();
        return Status::OK();
      }
      const char kind = src_[tag + 1];
      if (kind == '{' || kind == '%' || kind == '#') break;
      ++tag;
    }
    const char kind = src_[tag + 1];
    size_t inner = tag + 2;
    char sign = 0;
    if (inner < src_.size() && (src_[inner] == '-' || src_[inner] == '+')) sign = src_[inner++];
    if (kind == '%') {
      // {% raw %} is recognised by the lexer, as in Jinja.
      size_t p = SkipWhitespace(inner);
      if (At(p, "raw")) {
        p = SkipWhitespace(p + 3);
        if (At(p, "-%}") || At(p, "%}")) {
          PushText(pos_, tag, sign, true);
          const bool strip = src_[p] == '-';
          size_t end = p + (strip ? 3 : 2);
          if (strip) end = SkipWhitespace(end);
          line_starting_ = src_[end - 1] == '\n';
          return LexRaw(tag, end);
        }
      }
    }
    PushText(pos_, tag, sign, kind != '{');
    if (kind == '#') return LexComment(tag, inner);
    Push(kind == '{' ? TokenKind::kVarBegin : TokenKind::kBlockBegin, tag);
    return LexTag(kind == '%', tag, inner);
  }

  Status LexComment(size_t tag, size_t inner) {
    const size_t close = src_.find("#}", inner);
    if (close == std::string::npos) return TemplateError(LineOf(tag), "missing end of comment tag");
    char sign = 0;
    size_t close_begin = close;
    if (close > inner && (src_[close - 1] == '-' || src_[close - 1] == '+')) {
      sign = src_[close - 1];
      close_begin = close - 1;
    }
    pos_ = AfterClose(close_begin, close + 2 - close_begin, sign, true);
    return Status::OK();
  }

  Status LexRaw(size_t tag, size_t content) {
    for (size_t p = src_.find("{%", content); p != std::string::npos; p = src_.find("{%", p + 1)) {
      size_t q = p + 2;
      char sign = 0;
      if (q < src_.size() && (src_[q] == '-' || src_[q] == '+')) sign = src_[q++];
      q = SkipWhitespace(q);
      if (!At(q, "endraw")) continue;
      q = SkipWhitespace(q + 6);
      char close_sign = 0;
      if (At(q, "-%}") || At(q, "+%}")) {
        close_sign = src_[q];
      } else if (!At(q, "%}")) {
        continue;
      }
      PushText(content, p, sign, true);
      pos_ = AfterClose(q, close_sign != 0 ? 3 : 2, close_sign, true);
      return Status::OK();
    }
    return TemplateError(LineOf(tag), "missing end of raw directive");
  }

  Status LexTag(bool block, size_t tag, size_t pos) {
    std::vector<char> brackets;
    while (true) {
      pos = SkipWhitespace(pos);
      if (pos >= src_.size()) {
        return TemplateError(LineOf(tag), std::string("unexpected end of template inside ") +
                                              (block ? "{% %}" : "{{ }}"));
      }
      if (brackets.empty()) {
        // Closing delimiters only count outside brackets, as in Jinja ({{ {'a': {}} }}).
        const std::string_view close = block ? "%}" : "}}";
        if (At(pos, close)) {
          Push(block ? TokenKind::kBlockEnd : TokenKind::kVarEnd, pos);
          pos_ = AfterClose(pos, 2, 0, block);
          return Status::OK();
        }
        if ((src_[pos] == '-' || (block && src_[pos] == '+')) && At(pos + 1, close)) {
          Push(block ? TokenKind::kBlockEnd : TokenKind::kVarEnd, pos);
          pos_ = AfterClose(pos, 3, src_[pos], block);
          return Status::OK();
        }
      }
      const char c = src_[pos];
      if (IsDigit(c)) {
        CKV_ASSIGN_OR_RETURN(pos, LexNumber(pos));
      } else if (IsNameStart(c)) {
        size_t end = pos + 1;
        while (end < src_.size() && IsNameChar(src_[end])) ++end;
        Push(TokenKind::kName, pos, src_.substr(pos, end - pos));
        pos = end;
      } else if (c == '\'' || c == '"') {
        CKV_ASSIGN_OR_RETURN(pos, LexString(pos));
      } else {
        CKV_ASSIGN_OR_RETURN(pos, LexOperator(pos, &brackets));
      }
    }
  }

  Result<size_t> LexOperator(size_t pos, std::vector<char>* brackets) {
    for (std::string_view op : kOperators) {
      if (!At(pos, op)) continue;
      const char c = op[0];
      if (op.size() == 1 && (c == '(' || c == '[' || c == '{')) {
        brackets->push_back(c == '(' ? ')' : c == '[' ? ']' : '}');
      } else if (op.size() == 1 && (c == ')' || c == ']' || c == '}')) {
        if (brackets->empty()) {
          return TemplateError(LineOf(pos), "unexpected '" + std::string(op) + "'");
        }
        if (brackets->back() != c) {
          return TemplateError(LineOf(pos), "unexpected '" + std::string(op) + "', expected '" +
                                                std::string(1, brackets->back()) + "'");
        }
        brackets->pop_back();
      }
      Push(TokenKind::kOperator, pos, std::string(op));
      return pos + op.size();
    }
    size_t len = 1;
    while (pos + len < src_.size() &&
           (static_cast<unsigned char>(src_[pos + len]) & 0xC0) == 0x80) {
      ++len;
    }
    return TemplateError(LineOf(pos), "unexpected character '" + src_.substr(pos, len) + "'");
  }

  // Digits with single underscores between them ("1_000"); returns the end.
  size_t ScanDigits(size_t pos) const {
    while (pos < src_.size() &&
           (IsDigit(src_[pos]) || (src_[pos] == '_' && pos + 1 < src_.size() &&
                                   IsDigit(src_[pos + 1]) && IsDigit(src_[pos - 1])))) {
      ++pos;
    }
    return pos;
  }

  Result<size_t> LexNumber(size_t pos) {
    const int line = LineOf(pos);
    size_t end = ScanDigits(pos);
    // Jinja's float rule does not apply right after a dot, so "x.0.1" stays subscripts.
    const bool after_dot = pos > 0 && src_[pos - 1] == '.';
    bool is_float = false;
    if (!after_dot) {
      size_t p = end;
      if (p + 1 < src_.size() && src_[p] == '.' && IsDigit(src_[p + 1])) {
        p = ScanDigits(p + 1);
        is_float = true;
      }
      if (p < src_.size() && (src_[p] == 'e' || src_[p] == 'E')) {
        size_t q = p + 1;
        if (q < src_.size() && (src_[q] == '+' || src_[q] == '-')) ++q;
        if (q < src_.size() && IsDigit(src_[q])) {
          p = ScanDigits(q);
          is_float = true;
        }
      }
      if (is_float) end = p;
    }
    std::string digits;
    for (size_t i = pos; i < end; ++i) {
      if (src_[i] != '_') digits.push_back(src_[i]);
    }
    Token t;
    t.line = line;
    if (is_float) {
      t.kind = TokenKind::kFloat;
      t.float_value = std::strtod(digits.c_str(), nullptr);
      tokens_.push_back(std::move(t));
      return end;
    }
    int base = 10;
    if (digits == "0" && end < src_.size()) {
      const char p = static_cast<char>(src_[end] | 0x20);
      base = p == 'x' ? 16 : p == 'o' ? 8 : p == 'b' ? 2 : 10;
      if (base != 10) {
        digits.clear();
        end += 1;
        while (end < src_.size() && (HexDigit(src_[end]) >= 0 || src_[end] == '_')) {
          if (src_[end] != '_') {
            if (HexDigit(src_[end]) >= base) break;
            digits.push_back(src_[end]);
          }
          ++end;
        }
        if (digits.empty()) return TemplateError(line, "invalid integer literal");
      }
    }
    errno = 0;
    char* parse_end = nullptr;
    const long long value = std::strtoll(digits.c_str(), &parse_end, base);
    if (errno == ERANGE) return TemplateError(line, "integer literal too large");
    t.kind = TokenKind::kInt;
    t.int_value = value;
    tokens_.push_back(std::move(t));
    return end;
  }

  // Python's unicode-escape decoding of a string literal's body.
  Result<size_t> LexString(size_t pos) {
    const int line = LineOf(pos);
    const char quote = src_[pos];
    std::string value;
    size_t p = pos + 1;
    while (true) {
      if (p >= src_.size()) return TemplateError(line, "unterminated string literal");
      const char c = src_[p];
      if (c == quote) break;
      if (c != '\\') {
        value.push_back(c);
        ++p;
        continue;
      }
      if (p + 1 >= src_.size()) return TemplateError(line, "unterminated string literal");
      const char e = src_[p + 1];
      p += 2;
      switch (e) {
        case '\n':
          break;
        case '\\':
        case '\'':
        case '"':
          value.push_back(e);
          break;
        case 'a':
          value.push_back('\a');
          break;
        case 'b':
          value.push_back('\b');
          break;
        case 'f':
          value.push_back('\f');
          break;
        case 'n':
          value.push_back('\n');
          break;
        case 'r':
          value.push_back('\r');
          break;
        case 't':
          value.push_back('\t');
          break;
        case 'v':
          value.push_back('\v');
          break;
        case 'x':
        case 'u':
        case 'U': {
          const size_t n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          char32_t cp = 0;
          for (size_t i = 0; i < n; ++i) {
            const int d = p + i < src_.size() ? HexDigit(src_[p + i]) : -1;
            if (d < 0) return TemplateError(line, std::string("truncated \\") + e + " escape");
            cp = cp * 16 + static_cast<char32_t>(d);
          }
          p += n;
          AppendUtf8(cp, &value);
          break;
        }
        case 'N':
          return TemplateUnsupported(line, "unsupported string escape '\\N{...}'");
        default:
          if (e >= '0' && e <= '7') {
            char32_t cp = static_cast<char32_t>(e - '0');
            for (int i = 0; i < 2 && p < src_.size() && src_[p] >= '0' && src_[p] <= '7'; ++i) {
              cp = cp * 8 + static_cast<char32_t>(src_[p++] - '0');
            }
            AppendUtf8(cp, &value);
          } else {
            // Python keeps unknown escapes as written.
            value.push_back('\\');
            value.push_back(e);
          }
      }
    }
    Token t;
    t.kind = TokenKind::kString;
    t.line = line;
    t.text = std::move(value);
    tokens_.push_back(std::move(t));
    return p + 1;
  }

  std::string src_;
  std::vector<size_t> line_starts_;
  size_t pos_ = 0;
  // The previous match ended with a newline (or nothing was read yet): lstrip_blocks may
  // strip the indentation before a tag that starts the text.
  bool line_starting_ = true;
  std::vector<Token> tokens_;
};

}  // namespace

Status TemplateError(int line, std::string_view what) {
  return Status::InvalidArgument("chat template line " + std::to_string(line) + ": " +
                                 std::string(what));
}

Status TemplateUnsupported(int line, std::string_view what) {
  return Status::Unsupported("chat template line " + std::to_string(line) + ": " +
                             std::string(what));
}

Result<std::vector<Token>> Tokenize(std::string_view source) {
  return Lexer(source).Run();
}

}  // namespace ckv::jinja
