#include <iostream>
#include <nlohmann/json.hpp>

#include "ckv/generate.h"
#include "cli_common.h"

namespace ckv::cli {

void RegisterGenerate(CLI::App& root, std::vector<Command>& out) {
  struct Args {
    std::string model = DefaultModelDir();
    std::string prompt;
    int max_tokens = 64;
    float temperature = 0.0f;
    float top_p = 1.0f;
    uint64_t seed = 0;
    bool json = false;
    std::string kv = "auto";
    ModelLoadArgs load;
  };
  auto args = std::make_shared<Args>();
  CLI::App* app = root.add_subcommand("generate", "Generate a continuation of a prompt");
  app->add_option("--model", args->model, "Model directory (Hugging Face layout)")
      ->capture_default_str();
  app->add_option("--prompt", args->prompt,
                  "Prompt text (may be empty: BOS only, where the model has one)")
      ->required();
  app->add_option("--max-tokens", args->max_tokens, "Tokens to generate at most")
      ->capture_default_str();
  app->add_option("--temperature", args->temperature, "Sampling temperature; 0 = greedy")
      ->capture_default_str();
  app->add_option("--top-p", args->top_p, "Nucleus sampling mass in (0, 1]")->capture_default_str();
  app->add_option("--seed", args->seed, "Random seed for sampling")->capture_default_str();
  app->add_flag("--json", args->json,
                R"(Print {"prompt_ids":[...],"generated_ids":[...],"text":"..."})");
  app->add_option("--kv", args->kv,
                  "KV cache precision: auto (f32 for f32 weights, else bf16) | bf16 | f32")
      ->check(CLI::IsMember({"auto", "bf16", "f32"}))
      ->capture_default_str();
  args->load.AddTo(app, /*with_pack=*/true);
  out.push_back(
      {app, [args]() -> int {
         auto model = LoadModel(args->model, args->load);
         if (!model.ok()) return Fail(model.status());
         const Tokenizer* tok = (*model)->tokenizer();
         if (tok == nullptr) {
           return Fail(Status::NotFound(args->model + ": no tokenizer.json; --prompt needs one"));
         }
         auto ids = tok->Encode(args->prompt, true);
         if (!ids.ok()) return Fail(ids.status().WithContext("--prompt"));
         GenerateOptions go;
         go.max_tokens = args->max_tokens;
         go.sampling = {args->temperature, args->top_p, args->seed};
         go.kv_precision = ResolveKV(args->kv, **model);
         auto res = Generate(**model, *ids, go);
         if (!res.ok()) return Fail(res.status());
         if (args->json) {
           nlohmann::json j;
           j["prompt_ids"] = res->prompt_ids;
           j["generated_ids"] = res->generated_ids;
           j["text"] = res->text;
           j["stopped_at_eos"] = res->stopped_at_eos;
           j["prefill_ms"] = res->prefill_ms;
           j["decode_ms"] = res->decode_ms;
           std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
         } else {
           std::cout << args->prompt << res->text << "\n";
         }
         return 0;
       }});
}

}  // namespace ckv::cli
