// The parts of transformers' tokenizer_config.json that change encoding: add_bos_token /
// add_eos_token and the bos / eos token names.
#pragma once

#include <optional>
#include <string>

#include "model/tokenizer_json.h"

namespace ckv::tokenizer {

struct TokenizerConfig {
  // Unset when the key is absent (the tokenizer.json post-processor then decides).
  std::optional<bool> add_bos_token;
  std::optional<bool> add_eos_token;
  // has_*: the key is present; the name is then nullopt when the value is null.
  bool has_bos_token = false;
  std::optional<std::string> bos_token;
  bool has_eos_token = false;
  std::optional<std::string> eos_token;
};

Result<TokenizerConfig> ParseTokenizerConfig(const Json& json, const std::string& path);

}  // namespace ckv::tokenizer
