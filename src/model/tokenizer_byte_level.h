// The GPT-2 byte-to-unicode alphabet of byte-level BPE: every byte is written as one
// printable character (printable Latin-1 bytes as themselves, the rest as U+0100.. in
// byte order), so that vocabularies and merges are plain strings.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace ckv::tokenizer {

// Code point that stands for byte b.
char32_t ByteToCodePoint(uint8_t b);
// The byte a code point stands for, or -1 when it is not part of the alphabet.
int CodePointToByte(char32_t cp);
// `bytes` written in the alphabet (UTF-8).
std::string BytesToByteLevel(std::string_view bytes);
// Appends the bytes that the characters of `token` stand for; when a character is outside
// the alphabet the token's own UTF-8 is appended instead, as Hugging Face's ByteLevel
// decoder does (this matters for added tokens, which are stored as plain text).
void AppendByteLevelDecoded(std::string_view token, std::string* out);

}  // namespace ckv::tokenizer
