// Tokenizers loaded from a Hugging Face tokenizer.json: sentencepiece-style BPE with
// byte fallback (Llama) and byte-level BPE with the Qwen2 pre-tokenizer (Qwen2/2.5).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ckv/status.h"

namespace ckv {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Loads `dir/tokenizer.json` (or `dir/tokenizer.json.gz`) and, when present,
  // `dir/tokenizer_config.json` (add_bos_token / add_eos_token / bos / eos tokens).
  static Result<std::unique_ptr<Tokenizer>> FromDirectory(const std::string& dir);
  // Same from explicit paths; `config_path` may be empty.
  static Result<std::unique_ptr<Tokenizer>> FromFiles(const std::string& tokenizer_json_path,
                                                      const std::string& config_path);

  // Encodes UTF-8 text. Added/special tokens written in the text are matched before BPE.
  // With add_special_tokens the post-processor's tokens (e.g. Llama's BOS) are added.
  // Invalid UTF-8 input is an error naming the byte offset.
  virtual Result<std::vector<int32_t>> Encode(std::string_view text,
                                              bool add_special_tokens) const = 0;

  // Decodes ids to UTF-8 (invalid byte sequences become U+FFFD). With skip_special_tokens
  // the added tokens flagged special are dropped. Out-of-range ids are an error.
  virtual Result<std::string> Decode(std::span<const int32_t> ids,
                                     bool skip_special_tokens) const = 0;

  // Number of ids (regular + added), i.e. max id + 1.
  virtual int32_t vocab_size() const = 0;
  // The stored token string of an id ("Ġworld", "▁the", "<0x0A>"), empty if out of range.
  virtual std::string TokenString(int32_t id) const = 0;
  // Id of an exact token string (regular or added), if it exists.
  virtual std::optional<int32_t> TokenToId(std::string_view token) const = 0;

  // From tokenizer_config.json when present (else the post-processor / nothing).
  virtual std::optional<int32_t> bos_id() const = 0;
  virtual std::optional<int32_t> eos_id() const = 0;
  virtual bool IsSpecial(int32_t id) const = 0;
};

}  // namespace ckv
