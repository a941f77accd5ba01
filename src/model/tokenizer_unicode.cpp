#include "model/tokenizer_unicode.h"

#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>
#include <unicode/stringpiece.h>
#include <unicode/uchar.h>

#include <climits>

namespace ckv::tokenizer {
namespace {

// Length of the well-formed sequence starting at text[pos], or 0 when it is ill-formed;
// then *bad_len is the length of the maximal ill-formed prefix (at least 1), the unit that
// becomes one U+FFFD in lossy decoding.
size_t WellFormedLength(std::string_view text, size_t pos, size_t* bad_len) {
  const auto lead = static_cast<unsigned char>(text[pos]);
  if (lead < 0x80) return 1;
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;  // Allowed range of the first continuation byte.
  if (lead >= 0xC2 && lead <= 0xDF) {
    need = 1;
  } else if (lead == 0xE0) {
    need = 2, lo = 0xA0;  // Excludes overlongs.
  } else if ((lead >= 0xE1 && lead <= 0xEC) || lead == 0xEE || lead == 0xEF) {
    need = 2;
  } else if (lead == 0xED) {
    need = 2, hi = 0x9F;  // Excludes surrogates.
  } else if (lead == 0xF0) {
    need = 3, lo = 0x90;  // Excludes overlongs.
  } else if (lead >= 0xF1 && lead <= 0xF3) {
    need = 3;
  } else if (lead == 0xF4) {
    need = 3, hi = 0x8F;  // Excludes code points above U+10FFFF.
  } else {
    *bad_len = 1;
    return 0;
  }
  size_t i = pos + 1;
  for (size_t k = 0; k < need; ++k, ++i) {
    if (i >= text.size()) {
      *bad_len = i - pos;
      return 0;
    }
    const auto b = static_cast<unsigned char>(text[i]);
    if (b < lo || b > hi) {
      *bad_len = i - pos;
      return 0;
    }
    lo = 0x80, hi = 0xBF;
  }
  return need + 1;
}

}  // namespace

std::optional<size_t> FindInvalidUtf8(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    if (static_cast<unsigned char>(text[pos]) < 0x80) {
      ++pos;
      continue;
    }
    size_t bad_len = 0;
    const size_t len = WellFormedLength(text, pos, &bad_len);
    if (len == 0) return pos;
    pos += len;
  }
  return std::nullopt;
}

char32_t DecodeUtf8(std::string_view text, size_t* pos) {
  const auto lead = static_cast<unsigned char>(text[*pos]);
  const size_t len = Utf8SequenceLength(lead);
  char32_t cp = len == 1   ? lead
                : len == 2 ? (lead & 0x1F)
                : len == 3 ? (lead & 0x0F)
                           : (lead & 0x07);
  for (size_t k = 1; k < len; ++k) {
    cp = (cp << 6) | (static_cast<unsigned char>(text[*pos + k]) & 0x3F);
  }
  *pos += len;
  return cp;
}

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string Utf8Lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  size_t pos = 0;
  while (pos < bytes.size()) {
    size_t bad_len = 0;
    const size_t len = WellFormedLength(bytes, pos, &bad_len);
    if (len > 0) {
      out.append(bytes.substr(pos, len));
      pos += len;
    } else {
      out.append("\xEF\xBF\xBD");
      pos += bad_len;
    }
  }
  return out;
}

Result<std::string> NormalizeNfc(std::string_view text) {
  bool ascii = true;
  for (char c : text) ascii &= static_cast<unsigned char>(c) < 0x80;
  if (ascii) return std::string(text);  // ASCII is always NFC; skips ICU on the common path.
  if (text.size() > static_cast<size_t>(INT32_MAX)) {
    return Status::InvalidArgument("text too long for NFC normalization");
  }
  UErrorCode err = U_ZERO_ERROR;
  // ICU owns this singleton; it is immutable and thread-safe.
  const icu::Normalizer2* nfc = icu::Normalizer2::getNFCInstance(err);
  if (U_FAILURE(err)) return Status::Internal(std::string("ICU NFC: ") + u_errorName(err));
  const icu::StringPiece piece(text.data(), static_cast<int32_t>(text.size()));
  std::string out;
  out.reserve(text.size());
  icu::StringByteSink<std::string> sink(&out);
  nfc->normalizeUTF8(0, piece, sink, nullptr, err);
  if (U_FAILURE(err)) return Status::Internal(std::string("ICU NFC: ") + u_errorName(err));
  return out;
}

bool IsWhitespace(char32_t cp) {
  return u_isUWhiteSpace(static_cast<UChar32>(cp));
}

bool IsAlphanumeric(char32_t cp) {
  const auto c = static_cast<UChar32>(cp);
  if (u_isUAlphabetic(c)) return true;
  const int8_t type = u_charType(c);
  return type == U_DECIMAL_DIGIT_NUMBER || type == U_LETTER_NUMBER || type == U_OTHER_NUMBER;
}

}  // namespace ckv::tokenizer
