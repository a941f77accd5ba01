// ckv reprefill: serve one request whose context starts with a stored prefix.
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "ckv/reprefill.h"
#include "cli_common.h"

namespace ckv::cli {

nlohmann::json StatsJson(const ReprefillStats& s);  // also used by bench reprefill

nlohmann::json StatsJson(const ReprefillStats& s) {
  return {{"prefix_id", s.prefix_id},
          {"system", s.system},
          {"io_backend", s.io_backend},
          {"prefix_tokens", s.prefix_tokens},
          {"suffix_tokens", s.suffix_tokens},
          {"ttft_ms", s.ttft_ms},
          {"io_wait_ms", s.io_wait_ms},
          {"compute_ms", s.compute_ms},
          {"scoring_ms", s.scoring_ms},
          {"decode_ms", s.decode_ms},
          {"ssd_bytes_read", s.ssd_bytes_read},
          {"scoring_bytes_read", s.scoring_bytes_read},
          {"cache_bytes_hit", s.cache_bytes_hit},
          {"scoring_bytes_hit", s.scoring_bytes_hit},
          {"attended_bytes", s.attended_bytes},
          {"read_amplification", s.read_amplification},
          {"granularity_amplification", s.granularity_amplification},
          {"speculative_bytes_wasted", s.speculative_bytes_wasted},
          {"chunks_selected", s.chunks_selected},
          {"chunks_prefetched", s.chunks_prefetched},
          {"chunks_mispredicted", s.chunks_mispredicted},
          {"cache_hits", s.cache_hits},
          {"cache_misses", s.cache_misses},
          {"buffer_overflows", s.buffer_overflows},
          {"buffers_registered", s.buffers_registered},
          {"io_bandwidth_cap_mbps", s.io_bandwidth_cap_mbps},
          {"io_paced_ms", s.io_paced_ms},
          {"io_note", s.io_note},
          {"speculative_errors", s.speculative_errors},
          {"attended_ssd_bytes", s.attended_ssd_bytes},
          {"observed_layers", s.observed_layers},
          {"prefetch_peak_bytes", s.prefetch_peak_bytes},
          {"attended_fraction", s.attended_fraction},
          {"probe_layers", s.probe_layers},
          {"probe_vote_layers", s.probe_vote_layers},
          {"note", s.note}};
}

void RegisterReprefill(CLI::App& root, std::vector<Command>& out) {
  struct Args {
    std::string model = DefaultModelDir();
    ModelLoadArgs load;
    StoreArgs store;
    std::string prompt, prompt_file, scoring = "full", trace;
    ReprefillOptions opts;
    ReprefillEngine::Config engine;
    bool no_prefetch = false;
    bool json = false;
    bool compare_full = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* app = root.add_subcommand(
      "reprefill",
      "Answer a request whose context starts with a stored prefix (found by itself), loading "
      "only the prefix chunks that matter");
  app->add_option("--model", a->model, "Model directory")->capture_default_str();
  a->load.AddTo(app, /*with_pack=*/false);
  AddStoreOptions(*app, a->store);
  auto* p1 =
      app->add_option("--prompt", a->prompt, "The whole context: stored prefix + new question");
  auto* p2 = app->add_option("--prompt-file", a->prompt_file, "Read the whole context from a file");
  p1->excludes(p2);
  app->add_option("--budget", a->opts.budget, "Fraction r of prefix chunks attended, in (0, 1]")
      ->capture_default_str();
  app->add_option("--system", a->opts.system, SystemNamesHelp(" | "))->capture_default_str();
  app->add_option("--scoring", a->scoring,
                  "Chunk scoring source: full (first-layer keys) | summaries")
      ->check(CLI::IsMember({"full", "summaries"}))
      ->capture_default_str();
  app->add_option("--max-tokens", a->opts.max_tokens, "Tokens to generate")->capture_default_str();
  app->add_option("--temperature", a->opts.sampling.temperature, "Sampling temperature; 0 = greedy")
      ->capture_default_str();
  app->add_option("--top-p", a->opts.sampling.top_p, "Nucleus mass")->capture_default_str();
  app->add_option("--seed", a->opts.sampling.seed, "Sampling seed")->capture_default_str();
  app->add_option("--sub-period", a->opts.sub_period, "Inter-period prefetch offset sp (layers)")
      ->capture_default_str();
  app->add_flag("--no-prefetch", a->no_prefetch, "Load each period's chunks synchronously");
  AddEngineOptions(*app, a->engine);
  app->add_option("--trace", a->trace, "Write a Chrome trace-event timeline (Perfetto) to FILE");
  app->add_flag("--json", a->json, "Print generated ids, text and stats as JSON");
  app->add_flag("--compare-full", a->compare_full,
                "Also compute the answer with full attention over the whole context (no store) "
                "and report whether the tokens match");
  out.push_back(
      {app, [a, p1, p2]() -> int {
         if (p1->count() == 0 && p2->count() == 0) {
           return Fail(Status::InvalidArgument("give --prompt or --prompt-file"));
         }
         std::string text = a->prompt;
         if (p2->count() > 0) {
           std::ifstream in(a->prompt_file, std::ios::binary);
           if (!in) return Fail(Status::NotFound("cannot read --prompt-file " + a->prompt_file));
           std::stringstream ss;
           ss << in.rdbuf();
           text = ss.str();
         }
         auto model = LoadModel(a->model, a->load);
         if (!model.ok()) return Fail(model.status());
         if ((*model)->tokenizer() == nullptr)
           return Fail(Status::NotFound("model has no tokenizer"));
         auto ids = (*model)->tokenizer()->Encode(text, true);
         if (!ids.ok()) return Fail(ids.status().WithContext("prompt"));
         auto store = OpenStore(a->store);
         if (!store.ok()) return Fail(store.status());
         auto layout = a->store.Layout();
         if (!layout.ok()) return Fail(layout.status());
         a->engine.layout = *layout;
         auto engine = ReprefillEngine::Create(**model, **store, a->engine);
         if (!engine.ok()) return Fail(engine.status());
         a->opts.scoring =
             a->scoring == "summaries" ? ScoringSource::kSummaries : ScoringSource::kFullKeys;
         if (Status st = ApplySystemName(std::string(a->opts.system), a->opts); !st.ok())
           return Fail(st);
         a->opts.prefetch = !a->no_prefetch;
         a->opts.trace_path = a->trace;
         auto res = (*engine)->Run(*ids, a->opts);
         if (!res.ok()) return Fail(res.status());
         auto textr = DecodeContinuation(*(*model)->tokenizer(), *ids, res->generated_ids);
         const std::string gen = textr.ok() ? *textr : "";
         int match = -1;  // unknown
         if (a->compare_full) {
           ReprefillOptions full = a->opts;
           full.system = "recompute";
           full.trace_path.clear();
           auto ref = (*engine)->Run(*ids, full);
           if (!ref.ok()) return Fail(ref.status().WithContext("full-attention reference"));
           match = ref->generated_ids == res->generated_ids ? 1 : 0;
         }
         if (a->json) {
           nlohmann::json j{{"generated_ids", res->generated_ids},
                            {"text", gen},
                            {"stats", StatsJson(res->stats)}};
           if (match >= 0) j["matches_full_attention"] = match == 1;
           std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
         } else {
           const auto& s = res->stats;
           std::cout << gen << "\n";
           if (s.prefix_id.empty()) {
             std::cout << "(" << (s.note.empty() ? "no stored prefix: plain prefill" : s.note)
                       << ")\n";
           } else {
             std::cout << "prefix " << s.prefix_id << ": " << s.prefix_tokens << " tokens + "
                       << s.suffix_tokens << " new; TTFT " << s.ttft_ms << " ms (I/O wait "
                       << s.io_wait_ms << " ms), read " << s.ssd_bytes_read
                       << " B, read amplification " << s.read_amplification << "\n";
           }
           if (match >= 0) {
             std::cout << (match ? "matches full attention" : "differs from full attention")
                       << "\n";
           }
         }
         return 0;
       }});
}

}  // namespace ckv::cli
