// The tokenizer.json "post_processor" for single sequences: the ids TemplateProcessing
// puts before and after the encoded text (Llama's "<s> $A"); ByteLevel adds nothing.
#pragma once

#include <cstdint>
#include <vector>

#include "model/tokenizer_json.h"

namespace ckv::tokenizer {

struct PostProcessor {
  std::vector<int32_t> prefix;
  std::vector<int32_t> suffix;
};

// `json` may be null (adds nothing).
Result<PostProcessor> ParsePostProcessor(const Json* json, const JsonContext& ctx);

}  // namespace ckv::tokenizer
