// The tokenizer.json "normalizer": the subset of Hugging Face normalizers that Llama
// (Prepend "▁" + Replace " " -> "▁") and Qwen2 (NFC) need, applied in sequence to each
// piece of text between added tokens.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "model/tokenizer_json.h"

namespace ckv::tokenizer {

class Normalizer {
 public:
  // `json` may be null (no normalizer). Unsupported types are refused, naming the field.
  static Result<Normalizer> FromJson(const Json* json, const JsonContext& ctx);

  bool empty() const { return steps_.empty(); }
  // `text` must be valid UTF-8.
  Result<std::string> Apply(std::string_view text) const;

 private:
  struct Step {
    enum class Kind { kPrepend, kReplace, kNfc };
    Kind kind;
    std::string pattern;  // kReplace: what to replace.
    std::string content;  // kPrepend: what to prepend; kReplace: the replacement.
  };
  static Status AddSteps(const Json& json, const JsonContext& ctx, std::vector<Step>* steps);

  std::vector<Step> steps_;
};

}  // namespace ckv::tokenizer
