// ckv eval perplexity / ckv eval induction: does a model use its context?
#include <cmath>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>

#include "ckv/perplexity.h"
#include "cli_common.h"

namespace ckv::cli {
namespace {

std::string BucketName(const PositionBucket& b) {
  // As the buckets are named: 0-255, 256-1K, 1K-2K (a bucket cut by the window: 256-511).
  auto k = [](int64_t n) { return std::to_string(n / 1024) + "K"; };
  const std::string begin =
      b.begin % 1024 == 0 && b.begin > 0 ? k(b.begin) : std::to_string(b.begin);
  return begin + "-" + (b.end % 1024 == 0 ? k(b.end) : std::to_string(b.end - 1));
}

int PrintPerplexity(const PerplexityReport& r, bool json) {
  if (json) {
    nlohmann::json buckets = nlohmann::json::array();
    for (const auto& b : r.buckets) {
      buckets.push_back(
          {{"begin", b.begin}, {"end", b.end}, {"tokens", b.tokens}, {"mean_nll", b.mean_nll}});
    }
    std::cout << nlohmann::json{{"text_tokens", r.text_tokens},
                                {"context", r.context},
                                {"windows", r.windows},
                                {"partial_window", r.partial_window},
                                {"tokens_scored", r.tokens_scored},
                                {"mean_nll", r.mean_nll},
                                {"buckets", buckets}}
                     .dump(1)
              << "\n";
    return 0;
  }
  // A partial window is the whole text after BOS, shorter than --context.
  const int64_t window_len = r.partial_window ? r.text_tokens + 1 : r.context;
  std::cout << r.windows << (r.partial_window ? " partial" : "") << " window(s) of " << window_len
            << " tokens from a text of " << r.text_tokens << " tokens; mean NLL " << std::fixed
            << std::setprecision(4) << r.mean_nll << " (perplexity " << std::setprecision(2)
            << std::exp(r.mean_nll) << ")\n"
            << "| positions | tokens | mean NLL | perplexity |\n| --- | --- | --- | --- |\n";
  for (const auto& b : r.buckets) {
    std::cout << "| " << BucketName(b) << " | " << b.tokens << " | " << std::setprecision(4)
              << b.mean_nll << " | " << std::setprecision(2) << std::exp(b.mean_nll) << " |\n";
  }
  return 0;
}

int PrintInduction(const std::vector<InductionRow>& rows, int64_t span, bool text_spans,
                   bool json) {
  if (json) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& r : rows) {
      arr.push_back({{"gap", r.gap},
                     {"span_tokens", span},
                     {"trials", r.trials},
                     {"first_nll", r.first_nll},
                     {"second_nll", r.second_nll},
                     {"second_top1", r.second_top1},
                     {"text_spans", text_spans}});
    }
    std::cout << arr.dump(1) << "\n";
    return 0;
  }
  std::cout << "| gap | trials | NLL first | NLL repeated | repeated top-1 |\n"
               "| --- | --- | --- | --- | --- |\n";
  for (const auto& r : rows) {
    std::cout << std::fixed << "| " << r.gap << " | " << r.trials << " | " << std::setprecision(3)
              << r.first_nll << " | " << r.second_nll << " | " << std::setprecision(1)
              << 100 * r.second_top1 << "% |\n";
  }
  return 0;
}

}  // namespace

void RegisterEvalPerplexity(CLI::App& eval, std::vector<Command>& out) {
  struct Args {
    std::string model = DefaultModelDir();
    ModelLoadArgs load;
    std::string text;
    std::string kv = "auto";
    PerplexityOptions p;
    InductionOptions ind;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* ppl = eval.add_subcommand(
      "perplexity", "Mean NLL of a text by position in the context window (0-255, 256-1K, ...)");
  ppl->add_option("--model", a->model, "Model directory")->capture_default_str();
  a->load.AddTo(ppl, /*with_pack=*/false);
  ppl->add_option("--text", a->text, "UTF-8 text file")->required();
  ppl->add_option("--context", a->p.context, "Window length, BOS included (0 = the model's)")
      ->capture_default_str();
  ppl->add_option("--max-windows", a->p.max_windows, "At most this many windows (0 = all)")
      ->capture_default_str();
  ppl->add_option("--kv", a->kv, "KV precision: auto | bf16 | f32")
      ->check(CLI::IsMember({"auto", "bf16", "f32"}))
      ->capture_default_str();
  ppl->add_flag("--json", a->json, "Print the report as JSON");
  out.push_back({ppl, [a]() -> int {
                   auto text = ReadTextArg(a->text);
                   if (!text.ok()) return Fail(text.status());
                   auto model = LoadModel(a->model, a->load);
                   if (!model.ok()) return Fail(model.status());
                   a->p.kv = ResolveKV(a->kv, **model);
                   auto r = EvaluatePerplexity(**model, *text, a->p, ProgressOnStderr(a->json));
                   if (!a->json) std::cerr << "\n";
                   if (!r.ok()) return Fail(r.status());
                   return PrintPerplexity(*r, a->json);
                 }});

  CLI::App* ind = eval.add_subcommand(
      "induction",
      "A random span, real text, the span again: NLL of the repetition vs the first time");
  ind->add_option("--model", a->model, "Model directory")->capture_default_str();
  a->load.AddTo(ind, /*with_pack=*/false);
  ind->add_option("--text", a->text, "UTF-8 text between the two occurrences")->required();
  ind->add_option("--span", a->ind.span_tokens, "Random tokens per span")->capture_default_str();
  ind->add_option("--gaps", a->ind.gaps, "Filler tokens between the occurrences")
      ->delimiter(',')
      ->capture_default_str();
  ind->add_option("--trials", a->ind.trials, "Spans per gap")->capture_default_str();
  ind->add_option("--seed", a->ind.seed, "Random seed")->capture_default_str();
  ind->add_flag("--text-spans", a->ind.text_spans,
                "Spans cut from --text at random places, not random tokens");
  ind->add_flag("--json", a->json, "Print rows as JSON");
  out.push_back({ind, [a]() -> int {
                   auto text = ReadTextArg(a->text);
                   if (!text.ok()) return Fail(text.status());
                   auto model = LoadModel(a->model, a->load);
                   if (!model.ok()) return Fail(model.status());
                   a->ind.kv = (*model)->DefaultKVPrecision();
                   auto rows = InductionProbe(**model, *text, a->ind);
                   if (!rows.ok()) return Fail(rows.status());
                   return PrintInduction(*rows, a->ind.span_tokens, a->ind.text_spans, a->json);
                 }});
}

}  // namespace ckv::cli
