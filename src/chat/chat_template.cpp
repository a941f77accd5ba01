#include "ckv/chat_template.h"

#include <nlohmann/json.hpp>

#include "chat/jinja_json.h"
#include "chat/jinja_parser.h"
#include "chat/jinja_render.h"
#include "model/tokenizer_config.h"
#include "model/tokenizer_json.h"

namespace ckv {

struct ChatTemplate::Impl {
  std::string source;
  std::unique_ptr<jinja::TemplateAst> ast;
};

namespace {

using OrderedJson = nlohmann::ordered_json;

// OpenAI clients send function.arguments as JSON text; templates want the object. Replaces
// each string that parses as a JSON object, in a copy.
OrderedJson WithParsedToolArguments(const OrderedJson& messages) {
  OrderedJson copy = messages;
  for (OrderedJson& message : copy) {
    if (!message.is_object()) continue;
    const auto calls = message.find("tool_calls");
    if (calls == message.end() || !calls->is_array()) continue;
    for (OrderedJson& call : *calls) {
      if (!call.is_object()) continue;
      const auto function = call.find("function");
      if (function == call.end() || !function->is_object()) continue;
      const auto arguments = function->find("arguments");
      if (arguments == function->end() || !arguments->is_string()) continue;
      OrderedJson parsed = OrderedJson::parse(arguments->get<std::string>(), nullptr, false);
      if (!parsed.is_discarded() && parsed.is_object()) *arguments = std::move(parsed);
    }
  }
  return copy;
}

Status SetFromJson(jinja::Scope* scope, const std::string& name, const OrderedJson& json) {
  Result<jinja::Value> value = jinja::FromJson(json);
  if (!value.ok()) return value.status().WithContext("chat template input '" + name + "'");
  scope->Set(name, std::move(value).value());
  return Status::OK();
}

}  // namespace

Result<ChatTemplate> ChatTemplate::Parse(const std::string& source) {
  CKV_ASSIGN_OR_RETURN(std::unique_ptr<jinja::TemplateAst> ast, jinja::ParseTemplate(source));
  auto impl = std::make_shared<Impl>();
  impl->source = source;
  impl->ast = std::move(ast);
  return ChatTemplate(std::move(impl));
}

const std::string& ChatTemplate::source() const {
  return impl_->source;
}

Result<std::string> ChatTemplate::Render(const ChatTemplateInputs& inputs) const {
  if (inputs.messages == nullptr || !inputs.messages->is_array()) {
    return Status::InvalidArgument("chat template: messages must be a JSON array");
  }
  auto globals = std::make_shared<jinja::Scope>();
  if (inputs.parse_tool_call_arguments) {
    CKV_RETURN_IF_ERROR(
        SetFromJson(globals.get(), "messages", WithParsedToolArguments(*inputs.messages)));
  } else {
    CKV_RETURN_IF_ERROR(SetFromJson(globals.get(), "messages", *inputs.messages));
  }
  // apply_chat_template always passes tools and documents, None when absent.
  if (inputs.tools != nullptr) {
    CKV_RETURN_IF_ERROR(SetFromJson(globals.get(), "tools", *inputs.tools));
  } else {
    globals->Set("tools", jinja::Value::None());
  }
  globals->Set("documents", jinja::Value::None());
  globals->Set("add_generation_prompt", jinja::Value::Bool(inputs.add_generation_prompt));
  if (inputs.bos_token) globals->Set("bos_token", jinja::Value::String(*inputs.bos_token));
  if (inputs.eos_token) globals->Set("eos_token", jinja::Value::String(*inputs.eos_token));
  if (inputs.extra != nullptr) {
    if (!inputs.extra->is_object()) {
      return Status::InvalidArgument("chat template: extra variables must be a JSON object");
    }
    for (const auto& [name, value] : inputs.extra->items()) {
      CKV_RETURN_IF_ERROR(SetFromJson(globals.get(), name, value));
    }
  }
  jinja::RenderLimits limits;
  limits.max_output_bytes = inputs.max_output_bytes;
  jinja::Renderer renderer(limits);
  return renderer.Render(*impl_->ast, std::move(globals));
}

Result<ChatTemplateConfig> ReadChatTemplateConfig(const std::string& tokenizer_config_path,
                                                  const std::string& name) {
  CKV_ASSIGN_OR_RETURN(tokenizer::Json json, tokenizer::ReadJsonFile(tokenizer_config_path));
  CKV_ASSIGN_OR_RETURN(tokenizer::TokenizerConfig tokens,
                       tokenizer::ParseTokenizerConfig(json, tokenizer_config_path));
  ChatTemplateConfig config;
  config.bos_token = tokens.bos_token;
  config.eos_token = tokens.eos_token;
  const auto it = json.find("chat_template");
  if (it == json.end() || it->is_null()) {
    return Status::NotFound(tokenizer_config_path + ": no chat_template");
  }
  if (it->is_string()) {
    config.chat_template = it->get<std::string>();
    return config;
  }
  if (it->is_array()) {
    for (const tokenizer::Json& entry : *it) {
      if (!entry.is_object()) continue;
      const auto entry_name = entry.find("name");
      const auto entry_template = entry.find("template");
      if (entry_name != entry.end() && entry_name->is_string() && *entry_name == name &&
          entry_template != entry.end() && entry_template->is_string()) {
        config.chat_template = entry_template->get<std::string>();
        return config;
      }
    }
    return Status::NotFound(tokenizer_config_path + ": no chat_template named '" + name + "'");
  }
  return Status::InvalidArgument(tokenizer_config_path +
                                 ": chat_template must be a string or a list of templates");
}

Result<std::string> ReadChatTemplateFromConfig(const std::string& tokenizer_config_path,
                                               const std::string& name) {
  CKV_ASSIGN_OR_RETURN(ChatTemplateConfig config,
                       ReadChatTemplateConfig(tokenizer_config_path, name));
  return std::move(config.chat_template);
}

}  // namespace ckv
