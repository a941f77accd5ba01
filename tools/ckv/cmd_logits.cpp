#include <iostream>
#include <nlohmann/json.hpp>

#include "ckv/generate.h"
#include "cli_common.h"

namespace ckv::cli {

void RegisterLogits(CLI::App& root, std::vector<Command>& out) {
  struct Args {
    std::string model = DefaultModelDir();
    ModelLoadArgs load;
    std::string ids;
    std::string prompt;
    bool json = false;
    std::string kv = "auto";
  };
  auto args = std::make_shared<Args>();
  CLI::App* app = root.add_subcommand(
      "logits", "Print the full next-token logits at the last position of a sequence");
  app->add_option("--model", args->model, "Model directory")->capture_default_str();
  args->load.AddTo(app, /*with_pack=*/false);
  auto* ids_opt = app->add_option("--ids", args->ids, "Comma-separated token ids");
  auto* prompt_opt = app->add_option("--prompt", args->prompt, "Prompt text (encoded with BOS)");
  ids_opt->excludes(prompt_opt);
  app->add_flag("--json", args->json, R"(Print {"logits":[...],"argmax":N})");
  app->add_option("--kv", args->kv,
                  "KV cache precision: auto (f32 for f32 weights, else bf16) | bf16 | f32")
      ->check(CLI::IsMember({"auto", "bf16", "f32"}))
      ->capture_default_str();
  out.push_back(
      {app, [args, ids_opt, prompt_opt]() -> int {
         if (ids_opt->count() == 0 && prompt_opt->count() == 0) {
           return Fail(Status::InvalidArgument("give --ids or --prompt"));
         }
         auto model = LoadModel(args->model, args->load);
         if (!model.ok()) return Fail(model.status());
         std::vector<int32_t> ids;
         if (ids_opt->count() > 0) {
           auto parsed = ParseIdList(args->ids);
           if (!parsed.ok()) return Fail(parsed.status());
           ids = *parsed;
         } else {
           const Tokenizer* tok = (*model)->tokenizer();
           if (tok == nullptr) return Fail(Status::NotFound("model has no tokenizer; use --ids"));
           auto enc = tok->Encode(args->prompt, true);
           if (!enc.ok()) return Fail(enc.status().WithContext("--prompt"));
           ids = *enc;
         }
         if (static_cast<int64_t>(ids.size()) > (*model)->config().max_position_embeddings) {
           return Fail(Status::OutOfRange("sequence longer than the model's context"));
         }
         KVCache kv =
             (*model)->NewCache(ResolveKV(args->kv, **model), static_cast<int64_t>(ids.size()));
         std::vector<float> logits;
         Status st = (*model)->Forward(ids, kv, &logits);
         if (!st.ok()) return Fail(st);
         if (args->json) {
           nlohmann::json j;
           j["logits"] = logits;
           j["argmax"] = Argmax(logits);
           std::cout << j.dump() << "\n";
         } else {
           for (size_t i = 0; i < logits.size(); ++i) std::cout << i << "\t" << logits[i] << "\n";
         }
         return 0;
       }});
}

}  // namespace ckv::cli
