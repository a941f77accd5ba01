// The served model's chat template and special-token texts, and rendering a conversation into
// the prompt text (what POST /apply-template returns and /v1/chat/completions tokenizes).
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "ckv/chat_template.h"
#include "ckv/status.h"
#include "ckv/tokenizer.h"

namespace ckv::server {

class ChatPrompt {
 public:
  // Template from `template_file` when given, else the model's tokenizer_config.json; a model
  // without one serves completions only (has_template() false). A template that uses an
  // unsupported construct fails here, at startup.
  // bos_token / eos_token come from tokenizer_config.json, else from the tokenizer.
  static Result<ChatPrompt> Load(const std::string& model_dir, const std::string& template_file,
                                 const Tokenizer& tok);

  bool has_template() const { return tmpl_.has_value(); }
  // Thread-safe (ChatTemplate::Render is const).
  Result<std::string> Render(const nlohmann::ordered_json& messages,
                             const nlohmann::ordered_json& tools, bool add_generation_prompt) const;

 private:
  std::optional<ChatTemplate> tmpl_;
  std::optional<std::string> bos_token_;
  std::optional<std::string> eos_token_;
};

}  // namespace ckv::server
