#include "model/tokenizer_bpe_tokenizer.h"

#include <algorithm>
#include <climits>

#include "model/tokenizer_unicode.h"

namespace ckv::tokenizer {

Result<std::unique_ptr<BpeTokenizer>> BpeTokenizer::Create(const Json& json,
                                                           const std::string& path,
                                                           const TokenizerConfig* config,
                                                           const std::string& config_path) {
  const JsonContext root{path, ""};
  CKV_RETURN_IF_ERROR(ExpectObject(json, root));
  std::unique_ptr<BpeTokenizer> tok(new BpeTokenizer());

  CKV_ASSIGN_OR_RETURN(const Json* model, RequiredMember(json, "model", root));
  CKV_ASSIGN_OR_RETURN(tok->model_, BpeModel::FromJson(*model, root.Child("model")));

  if (const Json* added = OptionalMember(json, "added_tokens")) {
    CKV_ASSIGN_OR_RETURN(tok->added_tokens_, ParseAddedTokens(*added, root.Child("added_tokens")));
  }
  int32_t max_id = tok->model_.max_id();
  for (size_t i = 0; i < tok->added_tokens_.size(); ++i) {
    const AddedToken& token = tok->added_tokens_[i];
    tok->added_by_id_[token.id] = i;
    tok->added_by_content_.emplace(token.content, token.id);
    max_id = std::max(max_id, token.id);
  }
  tok->vocab_size_ = max_id + 1;
  tok->raw_matcher_ = AddedTokenMatcher(tok->added_tokens_, /*normalized=*/false);
  tok->normalized_matcher_ = AddedTokenMatcher(tok->added_tokens_, /*normalized=*/true);

  CKV_ASSIGN_OR_RETURN(tok->normalizer_, Normalizer::FromJson(OptionalMember(json, "normalizer"),
                                                              root.Child("normalizer")));
  CKV_ASSIGN_OR_RETURN(
      tok->pre_tokenizer_,
      PreTokenizer::FromJson(OptionalMember(json, "pre_tokenizer"), root.Child("pre_tokenizer")));
  CKV_ASSIGN_OR_RETURN(
      tok->post_processor_,
      ParsePostProcessor(OptionalMember(json, "post_processor"), root.Child("post_processor")));
  for (const auto& ids : {tok->post_processor_.prefix, tok->post_processor_.suffix}) {
    for (const int32_t id : ids) {
      if (id >= tok->vocab_size_) {
        return root.Child("post_processor")
            .Invalid("adds id " + std::to_string(id) + ", which is beyond the vocabulary");
      }
    }
  }
  CKV_ASSIGN_OR_RETURN(tok->decoder_,
                       Decoder::FromJson(OptionalMember(json, "decoder"), root.Child("decoder")));
  CKV_RETURN_IF_ERROR(tok->ApplyConfig(config, config_path));
  return tok;
}

Status BpeTokenizer::ApplyConfig(const TokenizerConfig* config, const std::string& config_path) {
  // Without a config (or a key in it) the post-processor's single added token is the BOS /
  // EOS, as it is for Llama's "<s> $A".
  if (post_processor_.prefix.size() == 1) bos_id_ = post_processor_.prefix[0];
  if (post_processor_.suffix.size() == 1) eos_id_ = post_processor_.suffix[0];
  if (config == nullptr) return Status::OK();
  const JsonContext ctx{config_path, ""};
  auto resolve = [&](const std::optional<std::string>& name, std::string_view key,
                     std::optional<int32_t>* id) -> Status {
    id->reset();
    if (!name) return Status::OK();
    *id = TokenToId(*name);
    if (!*id) return ctx.Child(key).Invalid("\"" + *name + "\" is not a token of the vocabulary");
    return Status::OK();
  };
  if (config->has_bos_token) CKV_RETURN_IF_ERROR(resolve(config->bos_token, "bos_token", &bos_id_));
  if (config->has_eos_token) CKV_RETURN_IF_ERROR(resolve(config->eos_token, "eos_token", &eos_id_));
  // transformers' Llama tokenizers rebuild the post-processor from add_bos_token /
  // add_eos_token; a key that is absent leaves tokenizer.json's choice alone.
  if (config->add_bos_token) {
    post_processor_.prefix.clear();
    if (*config->add_bos_token) {
      if (!bos_id_) return ctx.Child("add_bos_token").Invalid("is true but there is no bos_token");
      post_processor_.prefix.push_back(*bos_id_);
    }
  }
  if (config->add_eos_token) {
    post_processor_.suffix.clear();
    if (*config->add_eos_token) {
      if (!eos_id_) return ctx.Child("add_eos_token").Invalid("is true but there is no eos_token");
      post_processor_.suffix.push_back(*eos_id_);
    }
  }
  return Status::OK();
}

Result<std::vector<int32_t>> BpeTokenizer::Encode(std::string_view text,
                                                  bool add_special_tokens) const {
  if (const auto bad = FindInvalidUtf8(text)) {
    return Status::InvalidArgument("Encode: invalid UTF-8 at byte offset " + std::to_string(*bad));
  }
  // Symbol positions inside one BPE word are int32_t.
  if (text.size() >= static_cast<size_t>(INT32_MAX)) {
    return Status::InvalidArgument("Encode: text of " + std::to_string(text.size()) +
                                   " bytes is too long");
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 8);
  if (add_special_tokens) ids = post_processor_.prefix;
  BpeWorkspace ws;
  std::vector<TextSpan> spans;
  raw_matcher_.Split(text, &spans);
  for (const TextSpan& span : spans) {
    if (span.added_id >= 0) {
      ids.push_back(span.added_id);
      continue;
    }
    CKV_RETURN_IF_ERROR(EncodeText(text.substr(span.begin, span.end - span.begin), &ws, &ids));
  }
  if (add_special_tokens) {
    ids.insert(ids.end(), post_processor_.suffix.begin(), post_processor_.suffix.end());
  }
  return ids;
}

Status BpeTokenizer::EncodeText(std::string_view text, BpeWorkspace* ws,
                                std::vector<int32_t>* out) const {
  CKV_ASSIGN_OR_RETURN(const std::string normalized, normalizer_.Apply(text));
  std::vector<TextSpan> spans;
  if (normalized_matcher_.empty()) {
    if (!normalized.empty()) spans.push_back(TextSpan{0, normalized.size(), -1});
  } else {
    normalized_matcher_.Split(normalized, &spans);
  }
  std::vector<PieceRange> pieces;
  const std::string_view view(normalized);
  for (const TextSpan& span : spans) {
    if (span.added_id >= 0) {
      out->push_back(span.added_id);
      continue;
    }
    const std::string_view part = view.substr(span.begin, span.end - span.begin);
    CKV_RETURN_IF_ERROR(pre_tokenizer_.Split(part, &pieces));
    for (const auto& [begin, end] : pieces) {
      model_.Tokenize(part.substr(begin, end - begin), pre_tokenizer_.byte_level(), ws, out);
    }
  }
  return Status::OK();
}

const std::string* BpeTokenizer::DecodeString(int32_t id) const {
  if (const auto it = added_by_id_.find(id); it != added_by_id_.end()) {
    return &added_tokens_[it->second].content;
  }
  return model_.TokenOf(id);
}

Result<std::string> BpeTokenizer::Decode(std::span<const int32_t> ids,
                                         bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (const int32_t id : ids) {
    const std::string* token = id >= 0 && id < vocab_size_ ? DecodeString(id) : nullptr;
    if (token == nullptr) {
      return Status::OutOfRange("Decode: token id " + std::to_string(id) +
                                " is not in the vocabulary (size " + std::to_string(vocab_size_) +
                                ")");
    }
    if (skip_special_tokens && IsSpecial(id)) continue;
    tokens.push_back(*token);
  }
  std::string text = decoder_.Decode(std::move(tokens));
  // The decoder steps yield valid UTF-8 from valid token strings; this only guards the
  // promise of the interface.
  if (FindInvalidUtf8(text)) text = Utf8Lossy(text);
  return text;
}

std::string BpeTokenizer::TokenString(int32_t id) const {
  const std::string* token = DecodeString(id);
  return token == nullptr ? std::string() : *token;
}

std::optional<int32_t> BpeTokenizer::TokenToId(std::string_view token) const {
  if (const auto it = added_by_content_.find(token); it != added_by_content_.end()) {
    return it->second;
  }
  return model_.Find(token);
}

bool BpeTokenizer::IsSpecial(int32_t id) const {
  const auto it = added_by_id_.find(id);
  return it != added_by_id_.end() && added_tokens_[it->second].special;
}

}  // namespace ckv::tokenizer
