#include <iostream>
#include <nlohmann/json.hpp>

#include "cli_common.h"

namespace ckv::cli {
namespace {

Result<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& dir) {
  return Tokenizer::FromDirectory(dir);
}

}  // namespace

void RegisterTokenize(CLI::App& root, std::vector<Command>& out) {
  struct Args {
    std::string model = DefaultModelDir();
    std::string text;
    std::string ids;
    bool json = false;
    bool no_special = false;
    bool keep_special = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* tok = root.add_subcommand("tokenize", "Encode text to token ids");
  tok->add_option("--model", args->model, "Model (or tokenizer) directory")->capture_default_str();
  tok->add_option("--text", args->text, "UTF-8 text to encode")->required();
  tok->add_flag("--json", args->json, R"(Print {"ids":[...]})");
  tok->add_flag("--no-special", args->no_special,
                "Do not add BOS/EOS (added tokens in the text still match)");
  out.push_back({tok, [args]() -> int {
                   auto t = LoadTokenizer(args->model);
                   if (!t.ok()) return Fail(t.status());
                   auto ids = (*t)->Encode(args->text, !args->no_special);
                   if (!ids.ok()) return Fail(ids.status().WithContext("--text"));
                   if (args->json) {
                     std::cout << nlohmann::json{{"ids", *ids}}.dump() << "\n";
                   } else {
                     for (size_t i = 0; i < ids->size(); ++i)
                       std::cout << (i ? "," : "") << (*ids)[i];
                     std::cout << "\n";
                   }
                   return 0;
                 }});

  CLI::App* detok = root.add_subcommand("detokenize", "Decode token ids to text");
  detok->add_option("--model", args->model, "Model (or tokenizer) directory")
      ->capture_default_str();
  detok->add_option("--ids", args->ids, "Comma-separated token ids")->required();
  detok->add_flag("--keep-special", args->keep_special,
                  "Keep special tokens (e.g. <s>) in the text");
  detok->add_flag("--json", args->json, R"(Print {"text":"..."})");
  out.push_back({detok, [args]() -> int {
                   auto t = LoadTokenizer(args->model);
                   if (!t.ok()) return Fail(t.status());
                   auto ids = ParseIdList(args->ids);
                   if (!ids.ok()) return Fail(ids.status());
                   auto text = (*t)->Decode(*ids, !args->keep_special);
                   if (!text.ok()) return Fail(text.status().WithContext("--ids"));
                   if (args->json) {
                     std::cout << nlohmann::json{{"text", *text}}.dump() << "\n";
                   } else {
                     std::cout << *text << "\n";
                   }
                   return 0;
                 }});
}

}  // namespace ckv::cli
