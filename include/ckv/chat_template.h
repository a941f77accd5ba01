// Hugging Face chat templates (the Jinja2 `chat_template` of tokenizer_config.json),
// rendered by our own Jinja interpreter exactly as transformers' apply_chat_template renders
// them: Jinja2 3.1 semantics with trim_blocks, lstrip_blocks, loop controls, Hugging Face's
// tojson / raise_exception / strftime_now, in an immutable sandbox.
//
// A template is parsed once; constructs we do not support fail there, naming the construct
// and its line. Rendering is const and thread-safe.
#pragma once

#include <cstddef>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <utility>

#include "ckv/status.h"

namespace ckv {

// What a template renders with. The JSON is not copied and must outlive Render(). It is
// ordered_json because key order reaches the prompt through `tojson` (tool schemas), and
// Hugging Face keeps the order the client sent.
struct ChatTemplateInputs {
  // Required: a JSON array of OpenAI chat messages ({"role", "content", ...}; content may be
  // a string, null or a list of parts; assistant messages may carry "tool_calls").
  const nlohmann::ordered_json* messages = nullptr;
  // A JSON array of tool definitions; null (or JSON null) renders as None, as without tools.
  const nlohmann::ordered_json* tools = nullptr;
  // Hugging Face's default is false; a server answering a conversation wants true.
  bool add_generation_prompt = false;
  // Unset: undefined in the template, as when the tokenizer config has no such token.
  std::optional<std::string> bos_token;
  std::optional<std::string> eos_token;
  // A JSON object of further variables (enable_thinking, documents, date_string, ...); they
  // override the ones above.
  const nlohmann::ordered_json* extra = nullptr;
  // OpenAI clients send tool-call arguments as JSON text, while templates expect the object
  // (`arguments | tojson`). When true, string arguments that parse as a JSON object are
  // passed as that object; otherwise messages reach the template as given.
  bool parse_tool_call_arguments = false;
  // Render fails (OutOfRange) rather than produce more than this.
  size_t max_output_bytes = size_t{64} << 20;
};

class ChatTemplate {
 public:
  // Parses the template; an unsupported construct fails naming it and its line
  // ("chat template line 12: unsupported filter 'xmlattr'").
  static Result<ChatTemplate> Parse(const std::string& source);

  // Renders the prompt. Errors: raise_exception(msg) in the template gives InvalidArgument
  // with exactly msg; other template errors (Jinja's TypeError / UndefinedError ...)
  // InvalidArgument "chat template line N: ..."; a Python method we do not implement
  // Unsupported; the output, recursion and loop limits OutOfRange.
  Result<std::string> Render(const ChatTemplateInputs& inputs) const;

  const std::string& source() const;

 private:
  struct Impl;
  explicit ChatTemplate(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;  // immutable, shared by copies
};

// Reads "chat_template" from a tokenizer_config.json: the string form, or the list of
// {"name", "template"} entries (the one called `name`). NotFound when absent.
Result<std::string> ReadChatTemplateFromConfig(const std::string& tokenizer_config_path,
                                               const std::string& name = "default");

// The template with the special tokens a render needs, from the same file (tokens may be
// strings or AddedToken objects {"content": ...}; null or absent leaves them unset).
struct ChatTemplateConfig {
  std::string chat_template;
  std::optional<std::string> bos_token;
  std::optional<std::string> eos_token;
};
Result<ChatTemplateConfig> ReadChatTemplateConfig(const std::string& tokenizer_config_path,
                                                  const std::string& name = "default");

}  // namespace ckv
