// Unicode text helpers with Python's semantics, for the Jinja interpreter: UTF-8 code points,
// str.isspace / isprintable, strip, case mapping, splitlines, and the repr() of floats and
// strings. Rendered prompts must match what Python produces, so these follow CPython rather
// than the C locale.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ckv::jinja {

// Decodes UTF-8; a byte that does not start a valid sequence decodes as U+FFFD.
std::u32string DecodeUtf8(std::string_view s);
void AppendUtf8(char32_t cp, std::string* out);
std::string EncodeUtf8(std::u32string_view s);
size_t CodePointCount(std::string_view s);
bool IsAscii(std::string_view s);

// Byte length of the whitespace code point starting at s[pos] (Python's str.isspace(), which
// is also what `\s` matches in Jinja's lexer), 0 when there is none.
size_t WhitespaceLength(std::string_view s, size_t pos);
// Length of `s` with trailing whitespace removed (Python's str.rstrip()).
size_t RStripWhitespaceLength(std::string_view s);

bool IsPyWhitespace(char32_t c);
// Python's str.isprintable() for one code point: decides which characters repr() escapes.
bool IsPyPrintable(char32_t c);

enum class StripSide { kLeft, kRight, kBoth };
// str.strip / lstrip / rstrip; `chars` null strips whitespace.
std::string PyStrip(std::string_view s, const std::string* chars, StripSide side);

std::string PyUpper(std::string_view s);
std::string PyLower(std::string_view s);
std::string PySwapCase(std::string_view s);
std::string PyCapitalize(std::string_view s);
// str.title(): a cased character after an uncased one starts a word.
std::string PyTitle(std::string_view s);
// Jinja's `title` filter, which differs: words start after '-', whitespace, or an opening
// bracket.
std::string JinjaTitle(std::string_view s);
// Character-class predicates over all code points of a non-empty string (str.isdigit...).
enum class CharClass { kDigit, kAlpha, kAlnum, kSpace, kLower, kUpper };
bool PyIsClass(std::string_view s, CharClass cls);

// str.replace(old, new, count); count < 0 replaces all. An empty `old` inserts `repl`
// around every code point, as Python does.
std::string PyReplace(std::string_view s, std::string_view old, std::string_view repl,
                      int64_t count);

// str.splitlines(): \n, \r, \r\n, \v, \f, \x1c-\x1e, \x85, U+2028, U+2029 end lines.
std::vector<std::string> PySplitLines(std::string_view s, bool keepends);

// repr(float) / str(float): shortest round-trip digits, "1.0", "1e+16", "inf", "nan".
std::string PyFloatRepr(double d);
// repr(str): single quotes unless the text has ' and no ", Python's escapes.
std::string PyStrRepr(std::string_view s);
// markupsafe.escape: & < > " ' as entities.
std::string HtmlEscape(std::string_view s);

}  // namespace ckv::jinja
