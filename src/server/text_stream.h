// Turns generated token ids into text the way a client sees it: each token's new text as soon
// as it is complete (a token that ends inside a UTF-8 character, or text that may be the start
// of a stop string, is held back until it is decided), and the stop strings cut the output.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ckv/tokenizer.h"

namespace ckv::server {

class TextStream {
 public:
  TextStream(const Tokenizer& tok, std::vector<int32_t> prompt, std::vector<std::string> stops);

  // Adds a token; returns the text that became final (maybe empty). After a stop string
  // matched, stopped() is true and further tokens are ignored.
  std::string Push(int32_t id);
  // The text still held back at the end of generation (when no stop string matched).
  std::string Flush();
  bool stopped() const { return stopped_; }
  // Everything emitted so far (the answer).
  const std::string& text() const { return emitted_; }
  // Generated tokens whose text lies entirely in the answer (a stop string cut the rest).
  size_t tokens_in_answer() const { return tokens_in_answer_; }

 private:
  const Tokenizer& tok_;
  std::vector<int32_t> prompt_tail_;  // a few prompt tokens: decoding context for the first one
  std::vector<int32_t> generated_;
  std::vector<std::string> stops_;
  std::string emitted_;
  bool stopped_ = false;
  size_t tokens_in_answer_ = 0;
};

}  // namespace ckv::server
