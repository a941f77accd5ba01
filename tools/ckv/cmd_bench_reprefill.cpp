// ckv bench reprefill: Re-Prefill systems side by side on one model, store, disk and machine.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>

#include "ckv/prefix_store.h"
#include "ckv/reprefill.h"
#include "cli_common.h"
#include "engine/transformer.h"

namespace ckv::cli {

nlohmann::json StatsJson(const ReprefillStats& s);  // cmd_reprefill.cpp

namespace {

struct BenchArgs {
  std::string model = DefaultModelDir();
  StoreArgs store;
  std::string text = std::string(CKV_SOURCE_DIR) + "/../shared/data/pride_and_prejudice.txt";
  int64_t prefix_tokens = 4096;
  int64_t suffix_tokens = 32;
  std::vector<std::string> systems = {"contiguouskv"};
  std::vector<double> budgets = {0.05, 0.1, 0.25, 0.5};
  std::string scoring = "full";
  int requests = 3;
  std::string mode = "cold";  // cold | warm | both
  ReprefillEngine::Config engine;
  std::string out;
  bool trace = false;
};

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double idx = p * (v.size() - 1);
  const size_t lo = static_cast<size_t>(idx);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (idx - lo);
}

Result<std::vector<int32_t>> TextIds(const Model& model, const std::string& path, int64_t need) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("cannot read --text " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  if (model.tokenizer() == nullptr) return Status::InvalidArgument("model has no tokenizer");
  CKV_ASSIGN_OR_RETURN(std::vector<int32_t> ids, model.tokenizer()->Encode(ss.str(), true));
  // Repeat the text when it is shorter than needed (long-prefix sweeps).
  const std::vector<int32_t> once = ids;
  while (static_cast<int64_t>(ids.size()) < need)
    ids.insert(ids.end(), once.begin() + 1, once.end());
  ids.resize(need);
  return ids;
}

int Run(BenchArgs& a) {
  auto model = LoadModel(a.model);
  if (!model.ok()) return Fail(model.status());
  const ModelConfig& cfg = (*model)->config();
  const int64_t need = a.prefix_tokens + a.suffix_tokens * (a.requests + 1);
  if (a.prefix_tokens + a.suffix_tokens + 1 > cfg.max_position_embeddings) {
    return Fail(Status::InvalidArgument("prefix + suffix exceed the model's context"));
  }
  auto ids = TextIds(**model, a.text, need);
  if (!ids.ok()) return Fail(ids.status());
  auto store = OpenStore(a.store);
  if (!store.ok()) return Fail(store.status());
  auto layout = a.store.Layout();
  if (!layout.ok()) return Fail(layout.status());
  const std::span<const int32_t> prefix(ids->data(), a.prefix_tokens);
  // Each system reads its own layout; the prefix is prefilled once and stored in every
  // layout that is missing.
  std::vector<StoreLayout> missing;
  for (const std::string& system : a.systems) {
    const StoreLayout l = DefaultLayoutFor(system, *layout);
    auto found = (*store)->FindLongestPrefix((*model)->transformer().fingerprint(), l, prefix);
    const bool have = found && found->n_tokens >= a.prefix_tokens;
    if (!have && std::find(missing.begin(), missing.end(), l) == missing.end())
      missing.push_back(l);
  }
  if (!missing.empty()) {
    std::cerr << "storing a " << a.prefix_tokens << "-token prefix in " << missing.size()
              << " layout(s) (one-time prefill)...\n";
    auto infos = StorePrefix(**model, **store, missing, prefix, [](double f) {
      std::cerr << "\r" << static_cast<int>(f * 100) << "%" << std::flush;
    });
    std::cerr << "\n";
    if (!infos.ok()) return Fail(infos.status());
  }
  std::error_code ec;
  std::filesystem::create_directories(a.out, ec);
  if (ec) return Fail(Status::IOError("cannot create --out " + a.out + ": " + ec.message()));

  nlohmann::json rows = nlohmann::json::array();
  nlohmann::json summary = nlohmann::json::array();
  std::vector<std::string> modes;
  if (a.mode == "cold" || a.mode == "both") modes.push_back("cold");
  if (a.mode == "warm" || a.mode == "both") modes.push_back("warm");
  for (const std::string& mode : modes) {
    for (const std::string& system : a.systems) {
      for (double budget : a.budgets) {
        ReprefillOptions o;
        o.system = system;
        o.budget = budget;
        o.scoring = a.scoring == "summaries" ? ScoringSource::kSummaries : ScoringSource::kFullKeys;
        ReprefillEngine::Config ec2 = a.engine;
        ec2.layout = DefaultLayoutFor(system, *layout);
        if (mode == "cold") ec2.cache_bytes = 0;
        std::unique_ptr<ReprefillEngine> engine;
        std::vector<ReprefillStats> runs;
        // Warm: one engine whose cache a first (unrecorded) pass over the requests fills.
        for (int pass = mode == "warm" ? 0 : 1; pass < 2; ++pass) {
          for (int r = 0; r < a.requests; ++r) {
            if (mode == "cold" || !engine) {
              auto e = ReprefillEngine::Create(**model, **store, ec2);
              if (!e.ok()) return Fail(e.status());
              engine = std::move(e).value();
            }
            std::vector<int32_t> req(prefix.begin(), prefix.end());
            const auto* s0 = ids->data() + a.prefix_tokens + r * a.suffix_tokens;
            req.insert(req.end(), s0, s0 + a.suffix_tokens);
            if (a.trace && pass == 1) {
              std::ostringstream name;
              name << a.out << "/trace-" << mode << "-" << system << "-" << budget << "-" << r
                   << ".json";
              o.trace_path = name.str();
            }
            auto res = engine->Run(req, o);
            if (!res.ok()) return Fail(res.status().WithContext(system));
            if (pass == 1) {
              nlohmann::json row = StatsJson(res->stats);
              row["mode"] = mode;
              row["budget"] = budget;
              row["request"] = r;
              rows.push_back(row);
              runs.push_back(res->stats);
            }
          }
        }
        std::vector<double> ttft;
        double io = 0, comp = 0, amp = 0, gamp = 0, hits = 0, lookups = 0, wasted = 0;
        int64_t bytes = 0, attended = 0;
        for (const auto& s : runs) {
          ttft.push_back(s.ttft_ms);
          io += s.io_wait_ms;
          comp += s.compute_ms;
          bytes += s.ssd_bytes_read;
          attended += s.attended_bytes;
          amp += s.read_amplification;
          gamp += s.granularity_amplification;
          wasted += static_cast<double>(s.speculative_bytes_wasted);
          hits += static_cast<double>(s.cache_hits);
          lookups += static_cast<double>(s.cache_hits + s.cache_misses);
        }
        const double n = static_cast<double>(runs.size());
        nlohmann::json srow{{"system", system},
                            {"budget", budget},
                            {"workload", "single-prefix"},
                            {"mode", mode},
                            {"model", a.model},
                            {"prefix_tokens", a.prefix_tokens},
                            {"suffix_tokens", a.suffix_tokens},
                            {"requests", a.requests},
                            {"mean_ttft_ms", std::accumulate(ttft.begin(), ttft.end(), 0.0) / n},
                            {"p95_ttft_ms", Percentile(ttft, 0.95)},
                            {"mean_io_wait_ms", io / n},
                            {"mean_compute_ms", comp / n},
                            {"ssd_bytes_read", static_cast<double>(bytes) / n},
                            {"attended_bytes", static_cast<double>(attended) / n},
                            {"read_amplification", amp / n},
                            {"granularity_amplification", gamp / n},
                            {"speculative_bytes_wasted", wasted / n},
                            {"cache_hit_ratio", lookups > 0 ? hits / lookups : 0.0}};
        std::cerr << mode << " " << system << " r=" << budget << ": mean TTFT "
                  << srow["mean_ttft_ms"] << " ms (I/O wait " << srow["mean_io_wait_ms"]
                  << ", compute " << srow["mean_compute_ms"] << "), read " << srow["ssd_bytes_read"]
                  << " B\n";
        summary.push_back(srow);
      }
    }
  }
  std::ofstream(a.out + "/requests.json") << rows.dump(1) << "\n";
  std::ofstream(a.out + "/summary.json") << summary.dump(1) << "\n";
  std::ofstream csv(a.out + "/summary.csv");
  csv << "system,budget,mode,prefix_tokens,requests,mean_ttft_ms,p95_ttft_ms,mean_io_wait_ms,mean_"
         "compute_ms,"
         "ssd_bytes_read,attended_bytes,read_amplification,cache_hit_ratio\n";
  for (const auto& s : summary) {
    csv << s["system"].get<std::string>() << "," << s["budget"] << ","
        << s["mode"].get<std::string>() << "," << s["prefix_tokens"] << "," << s["requests"] << ","
        << s["mean_ttft_ms"] << "," << s["p95_ttft_ms"] << "," << s["mean_io_wait_ms"] << ","
        << s["mean_compute_ms"] << "," << s["ssd_bytes_read"] << "," << s["attended_bytes"] << ","
        << s["read_amplification"] << "," << s["cache_hit_ratio"] << "\n";
  }
  std::cout << summary.dump(1) << "\n";
  return 0;
}

}  // namespace

void RegisterBenchReprefill(CLI::App& bench, std::vector<Command>& out) {
  auto a = std::make_shared<BenchArgs>();
  CLI::App* app = bench.add_subcommand(
      "reprefill",
      "Re-Prefill TTFT of systems side by side on one stored prefix (cold/warm cache)");
  app->add_option("--model", a->model, "Model directory")->capture_default_str();
  AddStoreOptions(*app, a->store);
  AddEngineOptions(*app, a->engine);
  app->add_option("--text", a->text,
                  "Text the prefix and suffixes are cut from (repeated if short)")
      ->capture_default_str();
  app->add_option("--prefix-tokens", a->prefix_tokens, "Stored prefix length")
      ->capture_default_str();
  app->add_option("--suffix-tokens", a->suffix_tokens, "New tokens per request")
      ->capture_default_str();
  app->add_option("--systems", a->systems, "Systems")->delimiter(',')->capture_default_str();
  app->add_option("--budgets", a->budgets, "Budgets r")->delimiter(',')->capture_default_str();
  app->add_option("--scoring", a->scoring, "full | summaries")->capture_default_str();
  app->add_option("--requests", a->requests, "Requests per (system, budget)")
      ->capture_default_str();
  app->add_option("--mode", a->mode, "cold (no memory cache) | warm (cache filled first) | both")
      ->check(CLI::IsMember({"cold", "warm", "both"}))
      ->capture_default_str();
  app->add_flag("--trace", a->trace, "Write a Chrome trace of every recorded request into --out");
  app->add_option("--out", a->out, "Output directory (requests.json, summary.json, summary.csv)")
      ->required();
  out.push_back({app, [a]() { return Run(*a); }});
}

}  // namespace ckv::cli
