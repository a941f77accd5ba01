// ckv eval quality: pruned Re-Prefill against full attention on a real text.
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>

#include "ckv/quality.h"
#include "cli_common.h"

namespace ckv::cli {

void RegisterEval(CLI::App& root, std::vector<Command>& out) {
  CLI::App* eval = root.add_subcommand("eval", "Quality evaluations");
  eval->require_subcommand(1);
  RegisterEvalPerplexity(*eval, out);
  struct Args {
    std::string model = DefaultModelDir();
    ModelLoadArgs load;
    std::string text;
    QualityOptions q;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* quality = eval->add_subcommand(
      "quality",
      "Top-1 agreement, KL and NLL of pruned Re-Prefill vs full attention, per budget and system");
  quality->add_option("--model", a->model, "Model directory")->capture_default_str();
  a->load.AddTo(quality, /*with_pack=*/false);
  quality->add_option("--text", a->text, "UTF-8 text to cut windows from")->required();
  quality->add_option("--prefix-tokens", a->q.prefix_tokens, "Prefix lengths (BOS included)")
      ->delimiter(',')
      ->capture_default_str();
  quality->add_option("--suffix-tokens", a->q.suffix_tokens, "Suffix lengths")
      ->delimiter(',')
      ->capture_default_str();
  quality->add_option("--budgets", a->q.budgets, "Budgets r")
      ->delimiter(',')
      ->capture_default_str();
  quality
      ->add_option(
          "--systems", a->q.systems,
          "contiguouskv, contiguouskv-summaries, contiguouskv-whole-units, contiguouskv-coverage "
          "(budget = attention mass left out), random (ContiguousKV's budget, random chunks), "
          "as-lru, as-h2o-lru, impress, impress-vote")
      ->delimiter(',')
      ->capture_default_str();
  quality->add_option("--windows", a->q.windows, "Windows per (prefix, suffix) setting")
      ->capture_default_str();
  quality->add_option("--chunk-tokens", a->q.chunk_tokens, "c")->capture_default_str();
  quality->add_option("--period", a->q.period, "p")->capture_default_str();
  quality->add_flag("--json", a->json, "Print rows as JSON");
  out.push_back({quality, [a]() -> int {
                   auto text = ReadTextArg(a->text);
                   if (!text.ok()) return Fail(text.status());
                   auto model = LoadModel(a->model, a->load);
                   if (!model.ok()) return Fail(model.status());
                   const auto tmp = std::filesystem::temp_directory_path() /
                                    ("ckv-eval-" + std::to_string(::getpid()));
                   a->q.store_dir = tmp.string();
                   auto rows = EvaluateQuality(**model, *text, a->q, ProgressOnStderr(a->json));
                   std::error_code ec;
                   std::filesystem::remove_all(tmp, ec);
                   if (!a->json) std::cerr << "\n";
                   if (!rows.ok()) return Fail(rows.status());
                   if (a->json) {
                     nlohmann::json arr = nlohmann::json::array();
                     for (const auto& r : *rows) {
                       arr.push_back({{"system", r.system},
                                      {"budget", r.budget},
                                      {"prefix_tokens", r.prefix_tokens},
                                      {"suffix_tokens", r.suffix_tokens},
                                      {"windows", r.windows},
                                      {"top1_agreement", r.top1_agreement},
                                      {"mean_kl", r.mean_kl},
                                      {"mean_nll", r.mean_nll},
                                      {"full_mean_nll", r.full_mean_nll},
                                      {"attended_fraction", r.attended_fraction},
                                      {"read_fraction", r.read_fraction},
                                      {"scoring_read_fraction", r.scoring_read_fraction},
                                      {"probe_vote_fraction", r.probe_vote_fraction},
                                      {"adjacent_overlap", r.adjacent_overlap >= 0
                                                               ? nlohmann::json(r.adjacent_overlap)
                                                               : nlohmann::json()}});
                     }
                     std::cout << arr.dump(1) << "\n";
                     return 0;
                   }
                   std::cout << "| system | budget | prefix | suffix | windows | top-1 | mean KL | "
                                "NLL | NLL full | attended | read (scoring) | adjacent overlap |\n"
                             << "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | "
                                "--- | --- |\n";
                   for (const auto& r : *rows) {
                     std::cout << std::fixed << "| " << r.system << " | " << std::setprecision(2)
                               << r.budget << " | "
                               << (r.prefix_tokens ? std::to_string(r.prefix_tokens) : "all")
                               << " | "
                               << (r.suffix_tokens ? std::to_string(r.suffix_tokens) : "all")
                               << " | " << r.windows << " | " << std::setprecision(1)
                               << 100 * r.top1_agreement << "% | " << std::setprecision(4)
                               << r.mean_kl << " | " << r.mean_nll << " | " << r.full_mean_nll
                               << " | " << std::setprecision(3) << r.attended_fraction << " | "
                               << r.read_fraction << " (" << r.scoring_read_fraction << ") | "
                               << (r.adjacent_overlap >= 0
                                       ? std::to_string(std::lround(100 * r.adjacent_overlap)) + "%"
                                       : "-")
                               << " |\n";
                   }
                   return 0;
                 }});
}

}  // namespace ckv::cli
