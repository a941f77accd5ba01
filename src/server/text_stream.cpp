#include "server/text_stream.h"

#include <algorithm>

#include "ckv/generate.h"

namespace ckv::server {
namespace {

constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD: a token ended mid-character

bool EndsWithReplacement(const std::string& s) {
  return s.size() >= 3 && s.compare(s.size() - 3, 3, kReplacement) == 0;
}

}  // namespace

TextStream::TextStream(const Tokenizer& tok, std::vector<int32_t> prompt,
                       std::vector<std::string> stops)
    : tok_(tok), stops_(std::move(stops)) {
  // Decoding context only (leading-space rules of sentencepiece-style decoders).
  const size_t keep = std::min<size_t>(prompt.size(), 4);
  prompt_tail_.assign(prompt.end() - static_cast<std::ptrdiff_t>(keep), prompt.end());
  stops_.erase(std::remove(stops_.begin(), stops_.end(), std::string()), stops_.end());
}

std::string TextStream::Push(int32_t id) {
  if (stopped_) return "";
  generated_.push_back(id);
  auto decoded = DecodeContinuation(tok_, prompt_tail_, generated_);
  std::string text = decoded.ok() ? *decoded : emitted_;
  // Earliest stop string anywhere in the text (it may span tokens).
  size_t cut = std::string::npos;
  for (const auto& s : stops_) cut = std::min(cut, text.find(s));
  if (cut != std::string::npos) {
    stopped_ = true;
    std::string out =
        cut > emitted_.size() ? text.substr(emitted_.size(), cut - emitted_.size()) : "";
    emitted_ += out;
    return out;
  }
  // A trailing run of U+FFFD may be an incomplete character (byte-fallback tokens decode as a
  // run; an invalid run is all U+FFFD until it completes): wait for the rest. A real U+FFFD
  // in the output is emitted at Flush.
  size_t safe = text.size();
  while (safe >= 3 && EndsWithReplacement(text.substr(0, safe))) safe -= 3;
  // Hold back a tail that could still grow into a stop string.
  for (const auto& s : stops_) {
    for (size_t n = std::min(s.size() - 1, text.size()); n > 0; --n) {
      if (text.compare(text.size() - n, n, s, 0, n) == 0) {
        safe = std::min(safe, text.size() - n);
        break;
      }
    }
  }
  if (safe <= emitted_.size()) return "";
  std::string out = text.substr(emitted_.size(), safe - emitted_.size());
  emitted_ += out;
  tokens_in_answer_ = generated_.size();
  return out;
}

std::string TextStream::Flush() {
  if (stopped_ || generated_.empty()) return "";
  auto decoded = DecodeContinuation(tok_, prompt_tail_, generated_);
  if (!decoded.ok() || decoded->size() <= emitted_.size()) return "";
  std::string out = decoded->substr(emitted_.size());
  emitted_ += out;
  tokens_in_answer_ = generated_.size();
  return out;
}

}  // namespace ckv::server
