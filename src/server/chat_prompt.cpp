#include "server/chat_prompt.h"

#include <filesystem>

#include "ckv/text_file.h"

namespace ckv::server {

Result<ChatPrompt> ChatPrompt::Load(const std::string& model_dir, const std::string& template_file,
                                    const Tokenizer& tok) {
  ChatPrompt p;
  const std::string config_path = model_dir + "/tokenizer_config.json";
  std::string source;
  std::string origin;
  Result<ChatTemplateConfig> config = Status::NotFound(config_path);
  if (std::filesystem::exists(config_path)) config = ReadChatTemplateConfig(config_path);
  if (config.ok()) {
    p.bos_token_ = config->bos_token;
    p.eos_token_ = config->eos_token;
    source = config->chat_template;
    origin = config_path + " (chat_template)";
  } else if (config.status().code() != StatusCode::kNotFound) {
    return config.status();
  }
  if (!template_file.empty()) {
    CKV_ASSIGN_OR_RETURN(source, ReadTextFile(template_file));
    origin = template_file;
  }
  if (!p.bos_token_ && tok.bos_id()) p.bos_token_ = tok.TokenString(*tok.bos_id());
  if (!p.eos_token_ && tok.eos_id()) p.eos_token_ = tok.TokenString(*tok.eos_id());
  if (source.empty()) return p;  // no template: completions only
  auto parsed = ChatTemplate::Parse(source);
  if (!parsed.ok()) return parsed.status().WithContext(origin);
  p.tmpl_ = std::move(parsed).value();
  return p;
}

Result<std::string> ChatPrompt::Render(const nlohmann::ordered_json& messages,
                                       const nlohmann::ordered_json& tools,
                                       bool add_generation_prompt) const {
  if (!tmpl_) return Status::Unsupported("no chat template");
  ChatTemplateInputs in;
  in.messages = &messages;
  in.tools = &tools;
  in.add_generation_prompt = add_generation_prompt;
  in.bos_token = bos_token_;
  in.eos_token = eos_token_;
  in.parse_tool_call_arguments = true;
  return tmpl_->Render(in);
}

}  // namespace ckv::server
