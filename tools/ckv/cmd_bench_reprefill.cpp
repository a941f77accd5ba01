// ckv bench reprefill: Re-Prefill systems side by side on one model, store, disk and machine.

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>

#include "bench_output.h"
#include "bench_workload.h"
#include "ckv/prefix_store.h"
#include "ckv/reprefill.h"
#include "cli_common.h"

namespace ckv::cli {

nlohmann::json StatsJson(const ReprefillStats& s);  // cmd_reprefill.cpp

namespace {

struct BenchArgs {
  std::string model = DefaultModelDir();
  ModelLoadArgs load;
  StoreArgs store;
  std::string text = DataPath("data/pride_and_prejudice.txt");
  WorkloadArgs workload;
  std::vector<std::string> systems = {"contiguouskv"};
  std::vector<double> budgets = {0.05, 0.1, 0.25, 0.5};
  std::vector<std::string> budgets_for;  // "SYSTEM:B1,B2,..." overrides --budgets for SYSTEM
  std::string scoring = "full";
  std::vector<std::string> cache_policies = {"own"};
  std::string mode = "cold";  // cold | warm | both
  ReprefillEngine::Config engine;
  std::string out;
  bool trace = false;
  CLI::Option* cache_policy_flag = nullptr;
  bool no_plots = false;
  int warmup = 1;
};

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double idx = p * (v.size() - 1);
  const size_t lo = static_cast<size_t>(idx);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (idx - lo);
}

Result<std::vector<int32_t>> TextIds(const Model& model, const std::string& path) {
  if (path.empty()) return FindDataDir().status().WithContext("no --text given");
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("cannot read --text " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  if (model.tokenizer() == nullptr) return Status::InvalidArgument("model has no tokenizer");
  return model.tokenizer()->Encode(ss.str(), false);
}

// Stores every prefix of the workloads in every layout the systems read that does not hold it
// yet (one prefill per prefix).
Status StoreMissing(const Model& model, PrefixStore& store, const std::vector<Workload>& loads,
                    const std::vector<StoreLayout>& layouts) {
  for (const Workload& w : loads) {
    for (size_t i = 0; i < w.prefixes.size(); ++i) {
      const auto& prefix = w.prefixes[i];
      std::vector<StoreLayout> missing;
      for (const StoreLayout& l : layouts) {
        auto found = store.FindLongestPrefix(model.fingerprint(), l, prefix);
        if (!(found && found->n_tokens >= static_cast<int64_t>(prefix.size())))
          missing.push_back(l);
      }
      if (missing.empty()) continue;
      std::cerr << w.name << ": storing prefix " << i + 1 << "/" << w.prefixes.size() << " ("
                << prefix.size() << " tokens) in " << missing.size() << " layout(s)...\n";
      auto infos = StorePrefix(model, store, missing, prefix, [](double f) {
        std::cerr << "\r" << static_cast<int>(f * 100) << "%" << std::flush;
      });
      std::cerr << "\n";
      CKV_RETURN_IF_ERROR(infos.status());
    }
  }
  return Status::OK();
}

nlohmann::json SummaryRow(const std::vector<ReprefillStats>& runs) {
  std::vector<double> ttft;
  double io = 0, comp = 0, hits = 0, lookups = 0, wasted = 0, bytes = 0, attended = 0,
         hit_bytes = 0, frac = 0, probe_layers = 0, probe_votes = 0, overflows = 0, observed = 0,
         kv_read = 0, attended_ssd = 0;
  bool registered = !runs.empty();
  for (const auto& s : runs) {
    ttft.push_back(s.ttft_ms);
    io += s.io_wait_ms;
    comp += s.compute_ms;
    bytes += static_cast<double>(s.ssd_bytes_read);
    attended += static_cast<double>(s.attended_bytes);
    hit_bytes += static_cast<double>(s.cache_bytes_hit);
    wasted += static_cast<double>(s.speculative_bytes_wasted);
    kv_read += static_cast<double>(s.ssd_bytes_read - s.scoring_bytes_read);
    attended_ssd += static_cast<double>(s.attended_ssd_bytes);
    hits += static_cast<double>(s.cache_hits);
    lookups += static_cast<double>(s.cache_hits + s.cache_misses);
    frac += s.attended_fraction;
    probe_layers += s.probe_layers;
    probe_votes += s.probe_vote_layers;
    overflows += static_cast<double>(s.buffer_overflows);
    observed += s.observed_layers;
    // A request that was not a Re-Prefill (no stored prefix) read nothing: not evidence.
    if (!s.prefix_id.empty()) registered = registered && s.buffers_registered;
  }
  const double n = static_cast<double>(runs.size());
  // Ratios of sums over the requests, not means of per-request ratios: a warm request served
  // wholly from the cache has no ratio (it would count as 0), one that read a few units for a
  // handful of tokens an outsized one.
  const double amp = attended_ssd > 0 ? kv_read / attended_ssd : 0.0;
  // Attention data read from SSD and used (speculation that was not selected excluded).
  const double attention_read = kv_read - wasted;
  const double gamp = attended_ssd > 0 ? attention_read / attended_ssd : 0.0;
  return {{"mean_ttft_ms", std::accumulate(ttft.begin(), ttft.end(), 0.0) / n},
          {"p95_ttft_ms", Percentile(ttft, 0.95)},
          {"mean_io_wait_ms", io / n},
          {"mean_compute_ms", comp / n},
          {"ssd_bytes_read", bytes / n},
          {"attended_bytes", attended / n},
          {"cache_bytes_hit", hit_bytes / n},
          {"read_amplification", amp},
          {"granularity_amplification", gamp},
          {"speculative_bytes_wasted", wasted / n},
          // By bytes: read units differ in size between systems (ReprefillStats).
          {"cache_hit_ratio",
           hit_bytes + attention_read > 0 ? hit_bytes / (hit_bytes + attention_read) : 0.0},
          {"cache_unit_hit_ratio", lookups > 0 ? hits / lookups : 0.0},
          {"buffer_overflows", overflows / n},
          {"buffers_registered", registered},
          {"observed_layers", observed / n},
          {"attended_fraction", frac / n},
          {"probe_vote_fraction", probe_layers > 0 ? probe_votes / probe_layers : 0.0}};
}

// One line per row; strings quoted (notes hold commas), numbers as JSON writes them.
// "SYSTEM:B1,B2,..." -> (SYSTEM, budgets).
Result<std::pair<std::string, std::vector<double>>> ParseBudgetsFor(const std::string& spec) {
  const auto colon = spec.find(':');
  const Status bad = Status::InvalidArgument("--budgets-for \"" + spec +
                                             "\" is not SYSTEM:B1,B2,... with budgets in (0, 1]");
  if (colon == std::string::npos || colon == 0) return bad;
  std::vector<double> budgets;
  std::stringstream list(spec.substr(colon + 1));
  for (std::string item; std::getline(list, item, ',');) {
    try {
      size_t used = 0;
      const double b = std::stod(item, &used);
      if (used != item.size() || !(b > 0 && b <= 1)) return bad;
      budgets.push_back(b);
    } catch (const std::exception&) {
      return bad;
    }
  }
  if (budgets.empty()) return bad;
  return std::make_pair(spec.substr(0, colon), budgets);
}

// The request options and engine configuration of one (system, budget, cache policy) point;
// policy "none" runs without a memory cache.
struct Point {
  ReprefillOptions opts;
  ReprefillEngine::Config engine;
};

Result<Point> PointFor(const BenchArgs& a, const StoreLayout& layout, const std::string& system,
                       double budget, const std::string& policy) {
  Point pt;
  pt.opts.budget = budget;
  pt.opts.scoring = a.scoring == "summaries" ? ScoringSource::kSummaries : ScoringSource::kFullKeys;
  CKV_RETURN_IF_ERROR(ApplySystemName(system, pt.opts));
  pt.engine = a.engine;
  pt.engine.layout = DefaultLayoutFor(system, layout);
  if (policy == "none") {
    pt.engine.cache_bytes = 0;
  } else {
    pt.engine.cache_policy = policy;
  }
  return pt;
}

// Runs a workload's requests at one point and returns their stats, adding a row per request to
// `rows`. Cold: a fresh engine per request. Warm: one engine whose cache a first, unrecorded
// pass over the same requests fills.
Result<std::vector<ReprefillStats>> Measure(const BenchArgs& a, const Model& model,
                                            PrefixStore& store, const Workload& w,
                                            const std::string& system, const std::string& mode,
                                            const std::string& policy, double budget, Point pt,
                                            nlohmann::json& rows) {
  std::unique_ptr<ReprefillEngine> engine;
  std::vector<ReprefillStats> runs;
  for (int pass = mode == "warm" && policy != "none" ? 0 : 1; pass < 2; ++pass) {
    for (size_t r = 0; r < w.requests.size(); ++r) {
      if (mode == "cold" || !engine) {
        CKV_ASSIGN_OR_RETURN(engine, ReprefillEngine::Create(model, store, pt.engine));
      }
      pt.opts.trace_path.clear();
      if (a.trace && pass == 1) {
        std::ostringstream name;
        name << a.out << "/trace-" << w.name << "-" << w.MeanPrefixTokens() << "-" << mode << "-"
             << system << "-" << policy << "-" << budget << "-" << r << ".json";
        pt.opts.trace_path = name.str();
      }
      auto res = engine->Run(w.requests[r].tokens, pt.opts);
      if (!res.ok()) return res.status().WithContext(system);
      // A request that did not use its stored prefix measured a plain prefill.
      if (SystemReadsStoredPrefix(system) && res->stats.prefix_id.empty()) {
        return Status::Internal(system + " did not use the stored prefix (" + res->stats.note +
                                "); is --store-max-bytes too small?");
      }
      if (pass == 0) continue;
      nlohmann::json row = StatsJson(res->stats);
      row["system"] = system;
      row["workload"] = w.name;
      row["mode"] = mode;
      row["cache_policy"] = policy;
      row["budget"] = budget;
      row["request"] = r;
      row["prefix_index"] = w.requests[r].prefix;
      rows.push_back(row);
      runs.push_back(res->stats);
    }
  }
  return runs;
}

int Run(BenchArgs& a) {
  if (a.cache_policy_flag != nullptr && a.cache_policy_flag->count() > 0) {
    return Fail(Status::InvalidArgument(
        "bench reprefill takes --cache-policies (a list; \"own\" = each system's own policy), "
        "not --cache-policy"));
  }
  if ((a.mode == "warm" || a.mode == "both") && a.engine.cache_bytes <= 0) {
    return Fail(Status::InvalidArgument("--mode warm needs a memory cache: set --cache-bytes"));
  }
  for (const std::string& system : a.systems) {
    ReprefillOptions probe;
    if (Status st = ApplySystemName(system, probe); !st.ok()) return Fail(st);
  }
  for (double b : a.budgets) {
    if (!(b > 0 && b <= 1)) {
      return Fail(Status::InvalidArgument("--budgets: " + std::to_string(b) + " is not in (0, 1]"));
    }
  }
  if (a.budgets.empty()) return Fail(Status::InvalidArgument("--budgets is empty"));
  if (a.mode == "cold" && a.cache_policies != std::vector<std::string>{"own"}) {
    std::cerr << "warning: --cache-policies applies to warm runs; cold runs have no cache\n";
  }
  {
    std::error_code ec;
    std::filesystem::create_directories(a.out, ec);
    if (ec) return Fail(Status::IOError("cannot create --out " + a.out + ": " + ec.message()));
  }
  std::map<std::string, std::vector<double>> budgets_of;
  for (const std::string& system : a.systems) budgets_of[system] = a.budgets;
  for (const std::string& spec : a.budgets_for) {
    auto parsed = ParseBudgetsFor(spec);
    if (!parsed.ok()) return Fail(parsed.status());
    if (!budgets_of.count(parsed->first)) {
      return Fail(Status::InvalidArgument("--budgets-for names " + parsed->first +
                                          ", which is not in --systems"));
    }
    budgets_of[parsed->first] = parsed->second;
  }
  auto model = LoadModel(a.model, a.load);
  if (!model.ok()) return Fail(model.status());
  const ModelConfig& cfg = (*model)->config();
  auto text = TextIds(**model, a.text);
  if (!text.ok()) return Fail(text.status());
  auto loads = MakeWorkloads(a.workload, *text, (*model)->tokenizer()->bos_id());
  if (!loads.ok()) return Fail(loads.status());
  for (const Workload& w : *loads) {
    for (const BenchRequest& r : w.requests) {
      if (static_cast<int64_t>(r.tokens.size()) + 1 > cfg.max_position_embeddings) {
        return Fail(Status::InvalidArgument("a " + w.name + " request of " +
                                            std::to_string(r.tokens.size()) +
                                            " tokens exceeds the model's context of " +
                                            std::to_string(cfg.max_position_embeddings)));
      }
    }
  }
  auto store = OpenStore(a.store);
  if (!store.ok()) return Fail(store.status());
  auto layout = a.store.Layout();
  if (!layout.ok()) return Fail(layout.status());
  std::vector<StoreLayout> layouts;
  for (const std::string& system : a.systems) {
    if (!SystemReadsStoredPrefix(system)) continue;
    const StoreLayout l = DefaultLayoutFor(system, *layout);
    if (std::find(layouts.begin(), layouts.end(), l) == layouts.end()) layouts.push_back(l);
  }
  if (Status st = StoreMissing(**model, **store, *loads, layouts); !st.ok()) return Fail(st);

  // Unrecorded requests first: the first one pays for faulting in mmapped weights (seconds at
  // 7B) and oneDNN's JIT of each shape, which would land on whichever system runs first.
  const auto first = std::find_if(a.systems.begin(), a.systems.end(),
                                  [](const std::string& s) { return SystemReadsStoredPrefix(s); });
  for (int i = 0; first != a.systems.end() && i < a.warmup; ++i) {
    auto pt = PointFor(a, *layout, *first, budgets_of[*first].front(), "none");
    if (!pt.ok()) return Fail(pt.status());
    auto e = ReprefillEngine::Create(**model, **store, pt->engine);
    if (!e.ok()) return Fail(e.status());
    auto res = (*e)->Run((*loads)[0].requests[0].tokens, pt->opts);
    if (!res.ok()) return Fail(res.status().WithContext("warm-up"));
  }

  nlohmann::json rows = nlohmann::json::array();
  nlohmann::json summary = nlohmann::json::array();
  std::vector<std::string> modes;
  if (a.mode == "cold" || a.mode == "both") modes.push_back("cold");
  if (a.mode == "warm" || a.mode == "both") modes.push_back("warm");
  for (const std::string& mode : modes) {
    for (const Workload& w : *loads) {
      for (const std::string& system : a.systems) {
        // Cold runs and recompute have no memory cache, so no cache policy to vary.
        std::vector<std::string> policies;
        for (const std::string& p : a.cache_policies) {
          const std::string name = mode == "cold" || !SystemReadsStoredPrefix(system) ? "none"
                                   : p == "own" ? DefaultCachePolicyFor(system)
                                                : p;
          if (std::find(policies.begin(), policies.end(), name) == policies.end())
            policies.push_back(name);
        }
        for (const std::string& policy : policies) {
          nlohmann::json budget_free;  // recompute: measured once, reported at every budget
          for (double budget : budgets_of[system]) {
            auto pt = PointFor(a, *layout, system, budget, policy);
            if (!pt.ok()) return Fail(pt.status());
            nlohmann::json srow{{"system", system},
                                {"budget", budget},
                                {"workload", w.name},
                                {"mode", mode},
                                {"cache_policy", policy},
                                {"cache_bytes", pt->engine.cache_bytes},
                                {"io_bandwidth_cap_mbps", pt->engine.io_bandwidth_cap_mbps},
                                {"model", a.model},
                                {"prefix_tokens", w.MeanPrefixTokens()},
                                {"prefixes", w.prefixes.size()},
                                {"suffix_tokens", a.workload.suffix_tokens},
                                {"requests", w.requests.size()}};
            if (!budget_free.is_null()) {
              srow.update(budget_free);
              summary.push_back(srow);
              continue;
            }
            auto runs = Measure(a, **model, **store, w, system, mode, policy, budget,
                                std::move(pt).value(), rows);
            if (!runs.ok()) return Fail(runs.status());
            const nlohmann::json measured = SummaryRow(*runs);
            if (!SystemReadsStoredPrefix(system)) {
              budget_free = measured;
              budget_free["budget_independent"] = true;
            }
            srow.update(measured);
            std::cerr << w.name << " P=" << w.MeanPrefixTokens() << " " << mode << " " << system
                      << " cache=" << policy << " r=" << budget << ": mean TTFT "
                      << srow["mean_ttft_ms"] << " ms (I/O wait " << srow["mean_io_wait_ms"]
                      << ", compute " << srow["mean_compute_ms"] << "), read "
                      << srow["ssd_bytes_read"] << " B, hit ratio " << srow["cache_hit_ratio"]
                      << ", pool overflows " << srow["buffer_overflows"] << "\n";
            summary.push_back(srow);
          }
        }
      }
    }
  }
  const std::vector<std::string> summary_fields = {"workload",
                                                   "system",
                                                   "budget",
                                                   "mode",
                                                   "cache_policy",
                                                   "prefix_tokens",
                                                   "requests",
                                                   "mean_ttft_ms",
                                                   "p95_ttft_ms",
                                                   "mean_io_wait_ms",
                                                   "mean_compute_ms",
                                                   "ssd_bytes_read",
                                                   "attended_bytes",
                                                   "read_amplification",
                                                   "cache_hit_ratio",
                                                   "buffer_overflows",
                                                   "buffers_registered",
                                                   "io_bandwidth_cap_mbps"};
  std::vector<std::string> request_fields;
  if (!rows.empty())
    for (const auto& [key, value] : rows[0].items()) request_fields.push_back(key);
  if (Status st = WriteBenchTables(a.out, rows, request_fields, summary, summary_fields);
      !st.ok()) {
    return Fail(st);
  }
  if (!a.no_plots) RenderPlots("bench/plot_reprefill.py", a.out);
  std::cout << summary.dump(1) << "\n";
  return 0;
}

}  // namespace

void RegisterBenchReprefill(CLI::App& bench, std::vector<Command>& out) {
  auto a = std::make_shared<BenchArgs>();
  CLI::App* app = bench.add_subcommand(
      "reprefill", "Re-Prefill TTFT of systems side by side on a workload (cold/warm cache)");
  app->add_option("--model", a->model, "Model directory")->capture_default_str();
  a->load.AddTo(app, /*with_pack=*/false);
  AddStoreOptions(*app, a->store);
  AddEngineOptions(*app, a->engine);
  a->cache_policy_flag = app->get_option("--cache-policy");
  a->cache_policy_flag->description("Not for bench reprefill: see --cache-policies");
  app->add_option("--text", a->text,
                  "Text the prefixes and suffixes are cut from (reused cyclically if short)")
      ->capture_default_str();
  WorkloadArgs& w = a->workload;
  app->add_option("--workload", w.name,
                  "single (one prefix, consecutive suffixes) | manyshot (several many-shot "
                  "prompts, random queries) | zipf (many prefixes, Zipf popularity) | "
                  "length-sweep (one prefix per --prefix-lengths)")
      ->check(CLI::IsMember({"single", "manyshot", "zipf", "length-sweep"}))
      ->capture_default_str();
  app->add_option("--prefix-tokens", w.prefix_tokens,
                  "Prefix length (manyshot: the shortest; prefixes reach 1.5x)")
      ->capture_default_str();
  app->add_option("--prefix-lengths", w.prefix_lengths, "length-sweep: prefix lengths")
      ->delimiter(',')
      ->capture_default_str();
  app->add_option("--suffix-tokens", w.suffix_tokens, "New tokens per request")
      ->capture_default_str();
  app->add_option("--requests", w.requests,
                  "Requests per (system, budget, cache policy) and prefix length")
      ->capture_default_str();
  app->add_option("--prefixes", w.prefixes, "manyshot / zipf: distinct prefixes (0: 4 / 16)")
      ->capture_default_str();
  app->add_option("--zipf-s", w.zipf_s, "zipf: exponent s of the popularity 1/rank^s")
      ->capture_default_str();
  app->add_option("--shot-tokens", w.shot_tokens, "manyshot: tokens per demonstration")
      ->capture_default_str();
  app->add_option("--seed", w.seed, "Seed of the request stream")->capture_default_str();
  app->add_option("--systems", a->systems, SystemNamesHelp(", "))
      ->delimiter(',')
      ->capture_default_str();
  app->add_option("--budgets", a->budgets, "Budgets r")->delimiter(',')->capture_default_str();
  app->add_option("--budgets-for", a->budgets_for,
                  "SYSTEM:B1,B2,... budgets for one system instead of --budgets (repeatable; "
                  "e.g. a fine grid for contiguouskv to pair with IMPRESS at equal quality)");
  app->add_option("--scoring", a->scoring, "full | summaries (for contiguouskv)")
      ->check(CLI::IsMember({"full", "summaries"}))
      ->capture_default_str();
  app->add_option("--cache-policies", a->cache_policies,
                  "Warm runs: memory-cache eviction to compare (own = each system's own: "
                  "attention for contiguouskv, lru for as-*, impress for impress)")
      ->delimiter(',')
      ->check(CLI::IsMember({"own", "attention", "lru", "impress"}))
      ->capture_default_str();
  app->add_option("--mode", a->mode, "cold (no memory cache) | warm (cache filled first) | both")
      ->check(CLI::IsMember({"cold", "warm", "both"}))
      ->capture_default_str();
  app->add_flag("--trace", a->trace, "Write a Chrome trace of every recorded request into --out");
  app->add_option("--warmup", a->warmup,
                  "Unrecorded requests before measuring (page-in of weights, JIT)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app->add_flag("--no-plots", a->no_plots, "Do not render the PNG plots (bench/plot_reprefill.py)");
  app->add_option("--out", a->out,
                  "Output directory: requests.json/.csv, summary.json/.csv, PNG plots")
      ->required();
  out.push_back({app, [a]() { return Run(*a); }});
}

}  // namespace ckv::cli
