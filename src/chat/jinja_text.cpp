#include "chat/jinja_text.h"

#include <unicode/locid.h>
#include <unicode/stringpiece.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "model/tokenizer_unicode.h"

namespace ckv::jinja {
namespace {

constexpr char32_t kReplacement = 0xFFFD;

// Decodes the code point at s[pos]; *len receives its byte length (1 for an invalid byte).
char32_t DecodeAt(std::string_view s, size_t pos, size_t* len) {
  const auto b0 = static_cast<unsigned char>(s[pos]);
  *len = 1;
  if (b0 < 0x80) return b0;
  int n = 0;
  char32_t cp = 0;
  char32_t min = 0;
  if ((b0 & 0xE0) == 0xC0) {
    n = 1, cp = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    n = 2, cp = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    n = 3, cp = b0 & 0x07, min = 0x10000;
  } else {
    return kReplacement;
  }
  if (pos + n >= s.size()) return kReplacement;
  for (int i = 1; i <= n; ++i) {
    const auto b = static_cast<unsigned char>(s[pos + i]);
    if ((b & 0xC0) != 0x80) return kReplacement;
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return kReplacement;
  *len = static_cast<size_t>(n) + 1;
  return cp;
}

// Start of the code point that ends at s[end - 1].
size_t PrevStart(std::string_view s, size_t end) {
  size_t start = end - 1;
  int back = 0;
  while (start > 0 && back < 3 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) {
    --start;
    ++back;
  }
  size_t len = 0;
  DecodeAt(s, start, &len);
  return start + len == end ? start : end - 1;
}

using CaseFn = UChar32 (*)(UChar32);

std::string MapEach(std::string_view s, CaseFn fn) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : DecodeUtf8(s))
    AppendUtf8(static_cast<char32_t>(fn(static_cast<UChar32>(c))), &out);
  return out;
}

bool HasProp(char32_t c, UProperty p) {
  return u_hasBinaryProperty(static_cast<UChar32>(c), p);
}

char32_t TitleChar(char32_t c) {
  return static_cast<char32_t>(u_totitle(static_cast<UChar32>(c)));
}

bool IsJinjaWordSeparator(char32_t c) {
  return c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || IsPyWhitespace(c);
}

}  // namespace

std::u32string DecodeUtf8(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  size_t len = 0;
  for (size_t i = 0; i < s.size(); i += len) out.push_back(DecodeAt(s, i, &len));
  return out;
}

void AppendUtf8(char32_t cp, std::string* out) {
  // Python strings cannot hold these; what a template computes must still be valid UTF-8.
  if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) cp = kReplacement;
  tokenizer::AppendUtf8(cp, out);
}

std::string EncodeUtf8(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) AppendUtf8(c, &out);
  return out;
}

size_t CodePointCount(std::string_view s) {
  if (IsAscii(s)) return s.size();
  size_t n = 0;
  size_t len = 0;
  for (size_t i = 0; i < s.size(); i += len, ++n) DecodeAt(s, i, &len);
  return n;
}

bool IsAscii(std::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

bool IsPyWhitespace(char32_t c) {
  if (c <= 0x20) return c == 0x20 || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
  return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
         c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

size_t WhitespaceLength(std::string_view s, size_t pos) {
  if (pos >= s.size()) return 0;
  size_t len = 0;
  const char32_t c = DecodeAt(s, pos, &len);
  return IsPyWhitespace(c) ? len : 0;
}

size_t RStripWhitespaceLength(std::string_view s) {
  size_t end = s.size();
  while (end > 0) {
    const size_t start = PrevStart(s, end);
    size_t len = 0;
    if (!IsPyWhitespace(DecodeAt(s, start, &len))) break;
    end = start;
  }
  return end;
}

bool IsPyPrintable(char32_t c) {
  if (c == ' ') return true;
  switch (u_charType(static_cast<UChar32>(c))) {
    case U_CONTROL_CHAR:
    case U_FORMAT_CHAR:
    case U_SURROGATE:
    case U_PRIVATE_USE_CHAR:
    case U_UNASSIGNED:
    case U_LINE_SEPARATOR:
    case U_PARAGRAPH_SEPARATOR:
    case U_SPACE_SEPARATOR:
      return false;
    default:
      return true;
  }
}

std::string PyStrip(std::string_view s, const std::string* chars, StripSide side) {
  std::u32string set;
  if (chars != nullptr) set = DecodeUtf8(*chars);
  auto strip = [&](char32_t c) {
    return chars == nullptr ? IsPyWhitespace(c) : set.find(c) != std::u32string::npos;
  };
  size_t begin = 0;
  size_t end = s.size();
  size_t len = 0;
  if (side != StripSide::kRight) {
    while (begin < end && strip(DecodeAt(s, begin, &len))) begin += len;
  }
  if (side != StripSide::kLeft) {
    while (end > begin) {
      const size_t start = PrevStart(s, end);
      if (!strip(DecodeAt(s, start, &len))) break;
      end = start;
    }
  }
  return std::string(s.substr(begin, end - begin));
}

std::string PyUpper(std::string_view s) {
  if (IsAscii(s)) {
    std::string out(s);
    for (char& c : out) {
      if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    }
    return out;
  }
  icu::UnicodeString u =
      icu::UnicodeString::fromUTF8(icu::StringPiece(s.data(), static_cast<int32_t>(s.size())));
  u.toUpper(icu::Locale::getRoot());
  std::string out;
  u.toUTF8String(out);
  return out;
}

std::string PyLower(std::string_view s) {
  if (IsAscii(s)) {
    std::string out(s);
    for (char& c : out) {
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    return out;
  }
  icu::UnicodeString u =
      icu::UnicodeString::fromUTF8(icu::StringPiece(s.data(), static_cast<int32_t>(s.size())));
  u.toLower(icu::Locale::getRoot());
  std::string out;
  u.toUTF8String(out);
  return out;
}

std::string PySwapCase(std::string_view s) {
  return MapEach(s, [](UChar32 c) -> UChar32 {
    if (u_hasBinaryProperty(c, UCHAR_UPPERCASE)) return u_tolower(c);
    if (u_hasBinaryProperty(c, UCHAR_LOWERCASE)) return u_toupper(c);
    return c;
  });
}

std::string PyCapitalize(std::string_view s) {
  if (s.empty()) return std::string();
  size_t len = 0;
  const char32_t first = DecodeAt(s, 0, &len);
  std::string out;
  AppendUtf8(TitleChar(first), &out);
  out += PyLower(s.substr(len));
  return out;
}

std::string PyTitle(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  bool previous_cased = false;
  for (char32_t c : DecodeUtf8(s)) {
    const auto uc = static_cast<UChar32>(c);
    AppendUtf8(static_cast<char32_t>(previous_cased ? u_tolower(uc) : u_totitle(uc)), &out);
    previous_cased = HasProp(c, UCHAR_CASED);
  }
  return out;
}

std::string JinjaTitle(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  const std::u32string cps = DecodeUtf8(s);
  size_t i = 0;
  while (i < cps.size()) {
    if (IsJinjaWordSeparator(cps[i])) {
      AppendUtf8(cps[i++], &out);
      continue;
    }
    size_t j = i + 1;
    while (j < cps.size() && !IsJinjaWordSeparator(cps[j])) ++j;
    out += PyUpper(EncodeUtf8(cps.substr(i, 1)));
    out += PyLower(EncodeUtf8(cps.substr(i + 1, j - i - 1)));
    i = j;
  }
  return out;
}

bool PyIsClass(std::string_view s, CharClass cls) {
  if (s.empty()) return false;
  bool cased = false;
  for (char32_t c : DecodeUtf8(s)) {
    const auto uc = static_cast<UChar32>(c);
    const int type = u_charType(uc);
    const bool alpha = type == U_UPPERCASE_LETTER || type == U_LOWERCASE_LETTER ||
                       type == U_TITLECASE_LETTER || type == U_MODIFIER_LETTER ||
                       type == U_OTHER_LETTER;
    const int numeric = u_getIntPropertyValue(uc, UCHAR_NUMERIC_TYPE);
    switch (cls) {
      case CharClass::kDigit:
        if (numeric != U_NT_DECIMAL && numeric != U_NT_DIGIT) return false;
        break;
      case CharClass::kAlpha:
        if (!alpha) return false;
        break;
      case CharClass::kAlnum:
        if (!alpha && numeric == U_NT_NONE) return false;
        break;
      case CharClass::kSpace:
        if (!IsPyWhitespace(c)) return false;
        break;
      case CharClass::kLower:
        if (HasProp(c, UCHAR_UPPERCASE) || u_istitle(uc)) return false;
        cased = cased || HasProp(c, UCHAR_LOWERCASE);
        break;
      case CharClass::kUpper:
        if (HasProp(c, UCHAR_LOWERCASE) || u_istitle(uc)) return false;
        cased = cased || HasProp(c, UCHAR_UPPERCASE);
        break;
    }
  }
  return (cls == CharClass::kLower || cls == CharClass::kUpper) ? cased : true;
}

std::string PyReplace(std::string_view s, std::string_view old, std::string_view repl,
                      int64_t count) {
  std::string out;
  if (old.empty()) {
    size_t len = 0;
    size_t i = 0;
    for (; i < s.size() && count != 0; i += len, --count) {
      out += repl;
      DecodeAt(s, i, &len);
      out += s.substr(i, len);
    }
    out += s.substr(i);
    if (i == s.size() && count != 0) out += repl;
    return out;
  }
  size_t pos = 0;
  while (count != 0) {
    const size_t hit = s.find(old, pos);
    if (hit == std::string_view::npos) break;
    out += s.substr(pos, hit - pos);
    out += repl;
    pos = hit + old.size();
    --count;
  }
  out += s.substr(pos);
  return out;
}

std::vector<std::string> PySplitLines(std::string_view s, bool keepends) {
  std::vector<std::string> lines;
  size_t line_start = 0;
  size_t i = 0;
  size_t len = 0;
  while (i < s.size()) {
    const char32_t c = DecodeAt(s, i, &len);
    const bool boundary = c == '\n' || c == '\r' || c == 0x0B || c == 0x0C ||
                          (c >= 0x1C && c <= 0x1E) || c == 0x85 || c == 0x2028 || c == 0x2029;
    if (!boundary) {
      i += len;
      continue;
    }
    size_t eol = i + len;
    if (c == '\r' && eol < s.size() && s[eol] == '\n') ++eol;
    lines.emplace_back(s.substr(line_start, (keepends ? eol : i) - line_start));
    i = line_start = eol;
  }
  if (line_start < s.size()) lines.emplace_back(s.substr(line_start));
  return lines;
}

std::string PyFloatRepr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::scientific);
  std::string_view sci(buf, static_cast<size_t>(res.ptr - buf));
  std::string out;
  if (!sci.empty() && sci[0] == '-') {
    out.push_back('-');
    sci.remove_prefix(1);
  }
  const size_t e = sci.find('e');
  std::string digits;
  for (char c : sci.substr(0, e)) {
    if (c != '.') digits.push_back(c);
  }
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  const int exponent = std::atoi(std::string(sci.substr(e + 1)).c_str());
  const int decpt = exponent + 1;  // value = 0.DIGITS x 10^decpt
  const auto n = static_cast<int>(digits.size());
  if (decpt > -4 && decpt <= 16) {
    if (decpt <= 0) {
      out += "0." + std::string(static_cast<size_t>(-decpt), '0') + digits;
    } else if (decpt >= n) {
      out += digits + std::string(static_cast<size_t>(decpt - n), '0') + ".0";
    } else {
      out += digits.substr(0, static_cast<size_t>(decpt)) + "." +
             digits.substr(static_cast<size_t>(decpt));
    }
    return out;
  }
  out.push_back(digits[0]);
  if (n > 1) out += "." + digits.substr(1);
  char exp_buf[16];
  std::snprintf(exp_buf, sizeof(exp_buf), "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
  out += exp_buf;
  return out;
}

std::string PyStrRepr(std::string_view s) {
  const bool has_single = s.find('\'') != std::string_view::npos;
  const bool has_double = s.find('"') != std::string_view::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  char buf[16];
  for (char32_t c : DecodeUtf8(s)) {
    if (c == static_cast<char32_t>(quote) || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c < 0x20 || c == 0x7F) {
      std::snprintf(buf, sizeof(buf), "\\x%02x", static_cast<unsigned>(c));
      out += buf;
    } else if (c < 0x7F || IsPyPrintable(c)) {
      AppendUtf8(c, &out);
    } else {
      const char* fmt = c <= 0xFF ? "\\x%02x" : c <= 0xFFFF ? "\\u%04x" : "\\U%08x";
      std::snprintf(buf, sizeof(buf), fmt, static_cast<unsigned>(c));
      out += buf;
    }
  }
  out.push_back(quote);
  return out;
}

std::string HtmlEscape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

}  // namespace ckv::jinja
