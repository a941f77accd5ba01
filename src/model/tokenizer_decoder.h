// The tokenizer.json "decoder": token strings -> text, as a chain of Hugging Face decoder
// steps (Replace, ByteFallback, Fuse, Strip for Llama; ByteLevel for Qwen2), each mapping a
// list of strings to a list of strings; the final list is concatenated.
#pragma once

#include <string>
#include <vector>

#include "model/tokenizer_json.h"

namespace ckv::tokenizer {

class Decoder {
 public:
  // `json` may be null: then tokens are joined with single spaces, as HF does.
  static Result<Decoder> FromJson(const Json* json, const JsonContext& ctx);

  // The result may contain invalid UTF-8 only if the token strings do; the caller makes it
  // valid (steps that assemble bytes already produce valid UTF-8).
  std::string Decode(std::vector<std::string> tokens) const;

 private:
  struct Step {
    enum class Kind { kReplace, kByteFallback, kFuse, kStrip, kByteLevel };
    Kind kind;
    std::string pattern;  // kReplace.
    std::string content;  // kReplace: replacement; kStrip: the character stripped.
    size_t start = 0;     // kStrip: at most this many leading `content` characters.
    size_t stop = 0;      // kStrip: at most this many trailing ones.
  };
  static Status AddSteps(const Json& json, const JsonContext& ctx, std::vector<Step>* steps);

  bool has_decoder_ = false;
  std::vector<Step> steps_;
};

}  // namespace ckv::tokenizer
