// The Tokenizer implementation for BPE tokenizer.json files, following the Hugging Face
// pipeline: added tokens -> normalizer -> pre-tokenizer -> BPE -> post-processor, and
// ids -> token strings -> decoder. Both supported kinds are configurations of it:
//  * sentencepiece-style (Llama): Prepend/Replace normalizer, no pre-tokenizer, BPE over
//    characters with <0xXX> byte fallback, Replace/ByteFallback/Fuse/Strip decoder;
//  * byte-level (Qwen2): NFC, regex Split + ByteLevel pre-tokenizer, BPE over bytes,
//    ByteLevel decoder.
// Immutable after loading, so Encode/Decode may run concurrently.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "ckv/tokenizer.h"
#include "model/tokenizer_added_tokens.h"
#include "model/tokenizer_bpe_model.h"
#include "model/tokenizer_config.h"
#include "model/tokenizer_decoder.h"
#include "model/tokenizer_json.h"
#include "model/tokenizer_normalizer.h"
#include "model/tokenizer_post_processor.h"
#include "model/tokenizer_pre_tokenizer.h"

namespace ckv::tokenizer {

class BpeTokenizer final : public Tokenizer {
 public:
  // `json` is the parsed tokenizer.json read from `path`; `config` (may be null) is the
  // parsed tokenizer_config.json read from `config_path`.
  static Result<std::unique_ptr<BpeTokenizer>> Create(const Json& json, const std::string& path,
                                                      const TokenizerConfig* config,
                                                      const std::string& config_path);

  Result<std::vector<int32_t>> Encode(std::string_view text,
                                      bool add_special_tokens) const override;
  Result<std::string> Decode(std::span<const int32_t> ids, bool skip_special_tokens) const override;
  int32_t vocab_size() const override { return vocab_size_; }
  std::string TokenString(int32_t id) const override;
  std::optional<int32_t> TokenToId(std::string_view token) const override;
  std::optional<int32_t> bos_id() const override { return bos_id_; }
  std::optional<int32_t> eos_id() const override { return eos_id_; }
  bool IsSpecial(int32_t id) const override;

 private:
  BpeTokenizer() = default;
  Status ApplyConfig(const TokenizerConfig* config, const std::string& config_path);
  // Normalizes, pre-tokenizes and BPE-encodes one piece of text free of raw added tokens.
  Status EncodeText(std::string_view text, BpeWorkspace* ws, std::vector<int32_t>* out) const;
  // Token string for decoding: the added token's content, else the vocabulary's string.
  const std::string* DecodeString(int32_t id) const;

  BpeModel model_;
  std::vector<AddedToken> added_tokens_;
  std::unordered_map<int32_t, size_t> added_by_id_;  // id -> index into added_tokens_.
  TokenMap added_by_content_;                        // content -> id.
  AddedTokenMatcher raw_matcher_;                    // normalized=false added tokens.
  AddedTokenMatcher normalized_matcher_;             // normalized=true added tokens.
  Normalizer normalizer_;
  PreTokenizer pre_tokenizer_;
  PostProcessor post_processor_;
  Decoder decoder_;
  int32_t vocab_size_ = 0;
  std::optional<int32_t> bos_id_;
  std::optional<int32_t> eos_id_;
};

}  // namespace ckv::tokenizer
