#include <iostream>
#include <nlohmann/json.hpp>

#include "ckv/synth.h"
#include "cli_common.h"

namespace ckv::cli {

void RegisterModel(CLI::App& root, std::vector<Command>& out) {
  CLI::App* model = root.add_subcommand("model", "Model utilities (synth, info)");
  model->require_subcommand(1);

  struct SynthArgs {
    std::string config;
    std::string out;
    uint64_t seed = 0;
    std::string dtype = "bf16";
    std::string tokenizer = DataPath("models/qwen2-tokenizer");
  };
  auto sa = std::make_shared<SynthArgs>();
  CLI::App* synth = model->add_subcommand(
      "synth", "Write a random-weight model directory with a real config's shapes");
  synth
      ->add_option("--config", sa->config,
                   "qwen2.5-0.5b | qwen2.5-1.5b | qwen2.5-7b, or a path to a config.json")
      ->required();
  synth->add_option("--out", sa->out, "Output directory")->required();
  synth->add_option("--seed", sa->seed, "Random seed")->capture_default_str();
  synth->add_option("--dtype", sa->dtype, "Weight dtype: bf16 | f16 | f32")->capture_default_str();
  synth
      ->add_option("--tokenizer", sa->tokenizer,
                   "Tokenizer directory to copy (skipped if its vocabulary is larger than the "
                   "config's); empty for none")
      ->capture_default_str();
  out.push_back(
      {synth, [sa]() -> int {
         ModelConfig cfg;
         if (auto named = NamedConfig(sa->config)) {
           cfg = *named;
         } else {
           auto parsed = ModelConfig::FromFile(sa->config);
           if (!parsed.ok()) {
             return Fail(parsed.status().WithContext(
                 "--config is neither a known name (qwen2.5-0.5b, qwen2.5-1.5b, qwen2.5-7b) "
                 "nor a readable config.json"));
           }
           cfg = *parsed;
         }
         SynthOptions so;
         so.seed = sa->seed;
         so.dtype = sa->dtype;
         so.tokenizer_dir = sa->tokenizer;
         Status st = SynthesizeModel(cfg, sa->out, so);
         if (!st.ok()) return Fail(st);
         std::cout << "wrote " << sa->out << "\n";
         return 0;
       }});

  auto info_dir = std::make_shared<std::string>(DefaultModelDir());
  CLI::App* info = model->add_subcommand("info", "Print a model's config and fingerprint as JSON");
  info->add_option("--model", *info_dir, "Model directory")->capture_default_str();
  out.push_back({info, [info_dir]() -> int {
                   // The config and the tensor headers are all it prints: map, do not read.
                   ModelLoadArgs mapped;
                   mapped.mmap_weights = true;
                   auto m = LoadModel(*info_dir, mapped);
                   if (!m.ok()) return Fail(m.status());
                   const ModelConfig& c = (*m)->config();
                   nlohmann::json j = nlohmann::json::parse(c.ToJsonText());
                   char fp[32];
                   std::snprintf(fp, sizeof fp, "%016llx",
                                 static_cast<unsigned long long>((*m)->fingerprint()));
                   j["ckv_fingerprint"] = fp;
                   j["ckv_weight_dtype"] = (*m)->weight_dtype_name();
                   j["ckv_has_tokenizer"] = (*m)->tokenizer() != nullptr;
                   std::cout << j.dump(2) << "\n";
                   return 0;
                 }});
}

}  // namespace ckv::cli
