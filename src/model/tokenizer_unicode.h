// UTF-8 and Unicode helpers shared by the tokenizer stages: strict validation of input
// text, lossy decoding of byte sequences (the Rust String::from_utf8_lossy convention the
// Hugging Face decoders follow), NFC, and the character classes HF uses (Rust's
// char::is_whitespace / char::is_alphanumeric).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "ckv/status.h"

namespace ckv::tokenizer {

// Byte offset of the first byte that does not start a well-formed UTF-8 sequence, or
// nullopt when the whole text is valid (no overlongs, surrogates or code points > U+10FFFF).
std::optional<size_t> FindInvalidUtf8(std::string_view text);

// Length of the UTF-8 sequence whose lead byte is `lead`; only meaningful for valid text.
inline size_t Utf8SequenceLength(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  return 4;
}

// Decodes the code point at text[pos] (text must be valid UTF-8) and advances pos.
char32_t DecodeUtf8(std::string_view text, size_t* pos);

void AppendUtf8(char32_t cp, std::string* out);

// Replaces each maximal ill-formed subsequence by U+FFFD, exactly like Rust's
// String::from_utf8_lossy (so a truncated 4-byte sequence gives one U+FFFD, an encoded
// surrogate ED A0 80 gives three).
std::string Utf8Lossy(std::string_view bytes);

// NFC of valid UTF-8 text (ICU). Errors only if ICU itself fails.
Result<std::string> NormalizeNfc(std::string_view text);

// Rust char::is_whitespace (the Unicode White_Space property).
bool IsWhitespace(char32_t cp);
// Rust char::is_alphanumeric (Alphabetic, or general category Nd/Nl/No).
bool IsAlphanumeric(char32_t cp);

}  // namespace ckv::tokenizer
