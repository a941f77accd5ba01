// Tokenizer::FromDirectory / FromFiles: reads the files and dispatches on the
// tokenizer.json model type (only BPE is supported; see tokenizer_bpe_tokenizer.h for the
// two BPE kinds and the components each stage accepts).
#include "ckv/tokenizer.h"

#include <filesystem>

#include "model/tokenizer_bpe_tokenizer.h"
#include "model/tokenizer_config.h"
#include "model/tokenizer_json.h"

namespace ckv {

Result<std::unique_ptr<Tokenizer>> Tokenizer::FromDirectory(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::string json_path = (fs::path(dir) / "tokenizer.json").string();
  if (!fs::exists(json_path, ec)) {
    const std::string gz_path = json_path + ".gz";
    if (!fs::exists(gz_path, ec)) {
      return Status::NotFound(dir + ": neither tokenizer.json nor tokenizer.json.gz exists");
    }
    json_path = gz_path;
  }
  std::string config_path = (fs::path(dir) / "tokenizer_config.json").string();
  if (!fs::exists(config_path, ec)) config_path.clear();
  return FromFiles(json_path, config_path);
}

Result<std::unique_ptr<Tokenizer>> Tokenizer::FromFiles(const std::string& tokenizer_json_path,
                                                        const std::string& config_path) {
  using tokenizer::Json;
  using tokenizer::JsonContext;
  // The parsers check types before access, so nlohmann should never throw; the handler is
  // a backstop keeping exceptions inside this module.
  try {
    CKV_ASSIGN_OR_RETURN(const Json json, tokenizer::ReadJsonFile(tokenizer_json_path));
    std::optional<tokenizer::TokenizerConfig> config;
    if (!config_path.empty()) {
      CKV_ASSIGN_OR_RETURN(const Json config_json, tokenizer::ReadJsonFile(config_path));
      CKV_ASSIGN_OR_RETURN(config, tokenizer::ParseTokenizerConfig(config_json, config_path));
    }
    const JsonContext root{tokenizer_json_path, ""};
    CKV_RETURN_IF_ERROR(tokenizer::ExpectObject(json, root));
    CKV_ASSIGN_OR_RETURN(const Json* model, tokenizer::RequiredMember(json, "model", root));
    // Files written by older tokenizers versions may omit the model type; BPE is implied
    // by a "merges" member.
    std::string type;
    if (const Json* type_json = tokenizer::OptionalMember(*model, "type")) {
      if (!type_json->is_string()) return root.Child("model.type").Invalid("must be a string");
      type = type_json->get<std::string>();
    } else if (tokenizer::OptionalMember(*model, "merges") != nullptr) {
      type = "BPE";
    }
    if (type != "BPE") return root.Child("model.type").Unsupported(type);
    CKV_ASSIGN_OR_RETURN(auto tok,
                         tokenizer::BpeTokenizer::Create(json, tokenizer_json_path,
                                                         config ? &*config : nullptr, config_path));
    return std::unique_ptr<Tokenizer>(std::move(tok));
  } catch (const std::exception& e) {
    return Status::Internal(tokenizer_json_path + ": unexpected error while loading: " + e.what());
  }
}

}  // namespace ckv
