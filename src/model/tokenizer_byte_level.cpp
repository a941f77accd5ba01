#include "model/tokenizer_byte_level.h"

#include "model/tokenizer_unicode.h"

namespace ckv::tokenizer {
namespace {

constexpr bool IsSelfMapped(int b) {
  return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

constexpr std::array<char32_t, 256> MakeByteToCodePoint() {
  std::array<char32_t, 256> table{};
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) table[b] = IsSelfMapped(b) ? static_cast<char32_t>(b) : next++;
  return table;
}

constexpr std::array<char32_t, 256> kByteToCodePoint = MakeByteToCodePoint();
// The alphabet's largest code point is 256 + 68 - 1 (68 bytes are not self-mapped).
constexpr size_t kAlphabetLimit = 256 + 68;

constexpr std::array<int16_t, kAlphabetLimit> MakeCodePointToByte() {
  std::array<int16_t, kAlphabetLimit> table{};
  for (auto& v : table) v = -1;
  for (int b = 0; b < 256; ++b) table[kByteToCodePoint[b]] = static_cast<int16_t>(b);
  return table;
}

constexpr std::array<int16_t, kAlphabetLimit> kCodePointToByte = MakeCodePointToByte();

}  // namespace

char32_t ByteToCodePoint(uint8_t b) {
  return kByteToCodePoint[b];
}

int CodePointToByte(char32_t cp) {
  return cp < kAlphabetLimit ? kCodePointToByte[cp] : -1;
}

std::string BytesToByteLevel(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) AppendUtf8(kByteToCodePoint[static_cast<uint8_t>(c)], &out);
  return out;
}

void AppendByteLevelDecoded(std::string_view token, std::string* out) {
  const size_t mark = out->size();
  size_t pos = 0;
  while (pos < token.size()) {
    const int b = CodePointToByte(DecodeUtf8(token, &pos));
    if (b < 0) {
      out->resize(mark);
      out->append(token);
      return;
    }
    out->push_back(static_cast<char>(b));
  }
}

}  // namespace ckv::tokenizer
