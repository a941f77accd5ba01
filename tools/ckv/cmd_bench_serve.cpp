// ckv bench serve: many users against `ckv serve`, measured from the client's side. For each
// system (a server started here per row, on a fresh store) and each concurrency, N users in
// closed loop (with an optional think time) replay a workload over HTTP (streamed completions
// with token-id prompts) and the run records TTFT, inter-token latency, output tokens/s, the
// cached-token fraction and SSD bytes per request. Or, with --port, one row against a server
// already running.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "bench_output.h"
#include "ckv/server.h"
#include "ckv/tokenizer.h"
#include "cli_common.h"
#include "serve_client.h"

namespace ckv::cli {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

struct ServeBenchArgs {
  std::string model = DefaultModelDir();
  std::string text;  // default: the bundled novel
  std::vector<std::string> workloads = {"shared-prefix"};
  std::vector<std::string> systems = {"contiguouskv:0.1", "as-lru", "recompute"};
  std::vector<int> concurrency = {1, 4, 8};
  int requests = 16;  // measured requests per (system, concurrency)
  int64_t prefix_tokens = 2048;
  int prefixes = 2;
  int64_t suffix_tokens = 32;
  int max_tokens = 32;
  float temperature = 0.0f;  // 0: greedy, the same answers in every row
  int turns = 3;
  int64_t turn_tokens = 32;
  int documents = 2;
  // Mean think time before each of a user's requests (exponential, seeded per user; 0: closed
  // loop, every request sent as soon as the previous answer ended). Users then arrive over time
  // and a conversation's next turn comes after its reader read the answer, as people chat.
  double think_ms = 0;
  int max_running = 0;  // 0: the largest concurrency
  int64_t cache_mib = 256;
  double timeout_s = 600;
  std::string out;
  std::string host = "127.0.0.1";
  int port = 0;               // > 0: a running server (one row)
  bool pack_weights = false;  // the servers it starts (ServerOptions::pack_weights)
  bool no_plots = false;
};

// "system[:budget]": the server's --system and the requests' ckv_budget (as-lru defaults to
// 1.0, full load; recompute has no budget and stores nothing).
// "@mem:MIB" after a row keeps its prefix store in memory (tmpfs, /dev/shm) bounded to MIB:
// a DRAM-only prefix cache of that size, as engines that keep prefixes in host memory have.
struct SystemRow {
  std::string label;
  std::string system;
  double budget = 1.0;
  int64_t memory_store_mib = 0;  // > 0: the store lives in /dev/shm, bounded
};

Result<SystemRow> ParseSystemRow(const std::string& spec_in) {
  SystemRow row;
  row.label = spec_in;
  std::string spec = spec_in;
  if (const auto at = spec.find("@mem:"); at != std::string::npos) {
    try {
      size_t used = 0;
      const std::string n = spec.substr(at + 5);
      row.memory_store_mib = std::stoll(n, &used);
      if (used != n.size() || row.memory_store_mib < 1) throw std::invalid_argument("bad");
    } catch (const std::exception&) {
      return Status::InvalidArgument("--systems \"" + spec_in +
                                     "\": @mem: takes a size in MiB >= 1");
    }
    spec = spec.substr(0, at);
  }
  const auto colon = spec.find(':');
  row.system = spec.substr(0, colon);
  if (colon != std::string::npos) {
    try {
      size_t used = 0;
      row.budget = std::stod(spec.substr(colon + 1), &used);
      if (used != spec.size() - colon - 1) throw std::invalid_argument("trailing");
    } catch (const std::exception&) {
      return Status::InvalidArgument("--systems \"" + spec_in + "\": the budget is not a number");
    }
    if (!(row.budget > 0 && row.budget <= 1)) {
      return Status::InvalidArgument("--systems \"" + spec_in + "\": budget must be in (0, 1]");
    }
  }
  ReprefillOptions probe;
  CKV_RETURN_IF_ERROR(ApplySystemName(row.system, probe));
  return row;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double idx = p * (v.size() - 1);
  const size_t lo = static_cast<size_t>(idx);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (idx - lo);
}

// Until the server's background store writer is idle (warm-up stores land before measuring).
void WaitForStores(const std::string& host, int port) {
  for (int i = 0; i < 12000 && FetchMetric(host, port, "ckv_store_pending") > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

// The token material every workload cuts its prompts from.
struct Corpus {
  std::vector<int32_t> ids;
  // `n` tokens starting at `offset` (wrapping around).
  std::vector<int32_t> Slice(int64_t offset, int64_t n) const {
    std::vector<int32_t> out;
    out.reserve(n);
    const int64_t size = static_cast<int64_t>(ids.size());
    for (int64_t i = 0; i < n; ++i) out.push_back(ids[(offset + i) % size]);
    return out;
  }
};

// One measured request, as a row of requests.json.
json RequestRow(const StreamedCompletion& r, int user, int turn, int64_t prompt_tokens,
                double think_ms) {
  json row = {{"user", user},         {"turn", turn},
              {"think_ms", think_ms}, {"ok", r.ok()},
              {"error", r.error},     {"prompt_tokens", prompt_tokens},
              {"ttft_ms", r.ttft_ms}, {"mean_itl_ms", r.mean_itl_ms},
              {"e2e_ms", r.e2e_ms}};
  const json& u = r.usage;
  row["output_tokens"] = u.is_null() ? 0 : u.value("completion_tokens", 0);
  row["cached_tokens"] = u.is_null() ? 0 : u["prompt_tokens_details"].value("cached_tokens", 0);
  row["ssd_bytes"] = u.is_null() ? 0 : u["ckv"].value("ssd_bytes_read", int64_t{0});
  row["server_ttft_ms"] = u.is_null() ? 0.0 : u["ckv"].value("ttft_ms", 0.0);
  row["queue_ms"] = u.is_null() ? 0.0 : u["ckv"].value("queue_ms", 0.0);
  return row;
}

class WorkloadRun {
 public:
  WorkloadRun(const ServeBenchArgs& a, const Corpus& corpus, const Tokenizer& tok,
              const std::string& workload, const SystemRow& sys, int port)
      : a_(a), corpus_(corpus), tok_(tok), workload_(workload), sys_(sys), port_(port) {}

  json Body(const std::vector<int32_t>& prompt, int max_tokens) const {
    // return_token_ids: a multiturn user goes on with the ids the server generated, as a
    // client working in token space does (re-encoding the text can give other ids, and then
    // the stored context is missed by all but its prompt).
    json b = {{"prompt", prompt},
              {"max_tokens", max_tokens},
              {"temperature", a_.temperature},
              {"return_token_ids", true}};
    if (SystemReadsStoredPrefix(sys_.system)) {
      b["ckv_budget"] = sys_.budget;
    } else {
      b["ckv_store"] = false;  // no store: nothing is kept for the next request
    }
    return b;
  }

  // Shared prefixes (many-shot / RAG) and documents: seen once before measuring.
  std::vector<int32_t> SharedPrefix(int k) const {
    return corpus_.Slice(int64_t{k} * 7919 * 13, a_.prefix_tokens);
  }

  Status WarmUp() {
    const int n = workload_ == "shared-prefix" ? a_.prefixes : a_.documents;
    for (int k = 0; k < n; ++k) {
      std::vector<int32_t> p = SharedPrefix(k);
      const auto r = PostStreamedCompletion(a_.host, port_, Body(p, 1), a_.timeout_s);
      if (!r.ok()) return Status::Unavailable("warm-up request failed: " + r.error);
    }
    WaitForStores(a_.host, port_);
    return Status::OK();
  }

  // Users in closed loop (each with its think time, --think-ms) until `requests` were sent;
  // returns the rows.
  json Measure(int users) {
    json rows = json::array();
    std::mutex mu;
    std::atomic<int> next{0}, conversations{0};
    auto user_loop = [&](int user) {
      std::mt19937_64 rng(0x9E3779B97F4A7C15ull * static_cast<uint64_t>(user + 1));
      std::exponential_distribution<double> think_draw(a_.think_ms > 0 ? 1.0 / a_.think_ms : 1.0);
      auto think = [&] {  // returns the time thought (ms)
        if (a_.think_ms <= 0) return 0.0;
        const double ms = think_draw(rng);
        std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(ms));
        return ms;
      };
      if (workload_ == "shared-prefix") {
        for (int i; (i = next++) < a_.requests;) {
          const double thought = think();
          std::vector<int32_t> prompt = SharedPrefix(i % a_.prefixes);
          const auto q = corpus_.Slice(1000003 + int64_t{i} * a_.suffix_tokens, a_.suffix_tokens);
          prompt.insert(prompt.end(), q.begin(), q.end());
          const auto r =
              PostStreamedCompletion(a_.host, port_, Body(prompt, a_.max_tokens), a_.timeout_s);
          std::lock_guard<std::mutex> lock(mu);
          rows.push_back(RequestRow(r, user, 0, static_cast<int64_t>(prompt.size()), thought));
        }
        return;
      }
      // multiturn: each user goes on with its conversation (over one of the documents),
      // each prompt the previous one + its answer + a new question, and starts another
      // after `turns` turns; every user has work until the requests run out.
      std::vector<int32_t> prompt;
      int conversation = 0;
      for (int turn = a_.turns;;) {
        const int i = next++;
        if (i >= a_.requests) return;
        if (turn == a_.turns) {
          conversation = conversations++;
          prompt = SharedPrefix(conversation % a_.documents);
          turn = 0;
        }
        const auto q = corpus_.Slice(2000003 + (int64_t{conversation} * 31 + turn) * a_.turn_tokens,
                                     a_.turn_tokens);
        prompt.insert(prompt.end(), q.begin(), q.end());
        const double thought = think();
        const auto r =
            PostStreamedCompletion(a_.host, port_, Body(prompt, a_.max_tokens), a_.timeout_s);
        {
          std::lock_guard<std::mutex> lock(mu);
          rows.push_back(RequestRow(r, user, turn, static_cast<int64_t>(prompt.size()), thought));
        }
        ++turn;
        if (!r.ok()) {
          turn = a_.turns;  // a failed turn ends its conversation
          continue;
        }
        if (r.has_token_ids) {
          prompt.insert(prompt.end(), r.token_ids.begin(), r.token_ids.end());
        } else {  // a server without return_token_ids (--port): the text, re-encoded
          auto answer = tok_.Encode(r.text, /*add_special_tokens=*/false);
          if (answer.ok()) prompt.insert(prompt.end(), answer->begin(), answer->end());
        }
      }
    };
    std::vector<std::thread> threads;
    for (int u = 0; u < users; ++u) threads.emplace_back(user_loop, u);
    for (auto& t : threads) t.join();
    return rows;
  }

 private:
  const ServeBenchArgs& a_;
  const Corpus& corpus_;
  const Tokenizer& tok_;
  const std::string workload_;
  const SystemRow sys_;
  const int port_;
};

json Summarize(const json& rows, double wall_s) {
  std::vector<double> ttft, itl, e2e;
  int64_t out_tokens = 0, prompt = 0, cached = 0, ssd = 0;
  int errors = 0;
  for (const auto& r : rows) {
    if (!r["ok"].get<bool>()) {
      ++errors;
      continue;
    }
    ttft.push_back(r["ttft_ms"]);
    e2e.push_back(r["e2e_ms"]);
    if (r["output_tokens"].get<int64_t>() > 1) itl.push_back(r["mean_itl_ms"]);
    out_tokens += r["output_tokens"].get<int64_t>();
    prompt += r["prompt_tokens"].get<int64_t>();
    cached += r["cached_tokens"].get<int64_t>();
    ssd += r["ssd_bytes"].get<int64_t>();
  }
  const size_t ok = ttft.size();
  return {{"requests", rows.size()},
          {"errors", errors},
          {"wall_s", wall_s},
          {"output_tokens", out_tokens},
          {"output_tokens_per_s", wall_s > 0 ? out_tokens / wall_s : 0},
          {"ttft_p50_ms", Percentile(ttft, 0.5)},
          {"ttft_p95_ms", Percentile(ttft, 0.95)},
          {"ttft_p99_ms", Percentile(ttft, 0.99)},
          {"itl_p50_ms", Percentile(itl, 0.5)},
          {"itl_p95_ms", Percentile(itl, 0.95)},
          {"e2e_p50_ms", Percentile(e2e, 0.5)},
          {"cached_fraction", prompt > 0 ? static_cast<double>(cached) / prompt : 0},
          {"ssd_bytes_per_request", ok > 0 ? static_cast<double>(ssd) / ok : 0}};
}

int64_t PeakRssKiB() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

int Run(const ServeBenchArgs& a) {
  if (a.out.empty()) return Fail(Status::InvalidArgument("--out is required"));
  std::error_code ec;
  std::filesystem::create_directories(a.out, ec);
  if (ec) return Fail(Status::IOError("cannot create --out " + a.out + ": " + ec.message()));
  std::vector<SystemRow> systems;
  for (const auto& s : a.systems) {
    auto row = ParseSystemRow(s);
    if (!row.ok()) return Fail(row.status());
    systems.push_back(*row);
  }
  for (const auto& w : a.workloads) {
    if (w != "shared-prefix" && w != "multiturn") {
      return Fail(
          Status::InvalidArgument("--workloads: \"" + w + "\" is not shared-prefix or multiturn"));
    }
  }
  if (a.port > 0 && systems.size() != 1) {
    return Fail(Status::InvalidArgument(
        "--port measures the server that runs there: give one --systems row (its budget)"));
  }
  if (a.port > 0 && a.pack_weights) {
    return Fail(Status::InvalidArgument(
        "--pack-weights is for the servers bench serve starts: give it to the running server"));
  }
  for (int c : a.concurrency) {
    if (c < 1) return Fail(Status::InvalidArgument("--concurrency values must be >= 1"));
  }
  if (a.requests < 1 || a.prefixes < 1 || a.documents < 1 || a.turns < 1 || a.max_tokens < 1 ||
      a.prefix_tokens < 1 || a.suffix_tokens < 1 || a.turn_tokens < 1) {
    return Fail(Status::InvalidArgument(
        "--requests, --prefixes, --documents, --turns, --max-tokens and the token counts must "
        "be >= 1"));
  }
  auto tok = Tokenizer::FromDirectory(a.model);
  if (!tok.ok()) return Fail(tok.status());
  const std::string text_path = a.text.empty() ? DataPath("data/pride_and_prejudice.txt") : a.text;
  auto text = ReadTextArg(text_path);
  if (!text.ok()) return Fail(text.status());
  Corpus corpus;
  auto ids = (*tok)->Encode(*text, false);
  if (!ids.ok()) return Fail(ids.status());
  corpus.ids = std::move(ids).value();
  if (corpus.ids.empty()) return Fail(Status::InvalidArgument(text_path + " has no tokens"));

  // The @mem rows' stores, removed on every way out (a failed row included).
  struct RemoveDir {
    std::string path;
    ~RemoveDir() {
      std::error_code ignored;
      std::filesystem::remove_all(path, ignored);
    }
  } memory_stores{"/dev/shm/ckv-bench-serve-" + std::to_string(::getpid())};
  const int max_c = *std::max_element(a.concurrency.begin(), a.concurrency.end());
  json all_rows = json::array(), summary = json::array();
  for (const auto& workload : a.workloads) {
    for (const auto& sys : systems) {
      for (int c : a.concurrency) {
        std::unique_ptr<Server> server;
        int port = a.port;
        const std::string store =
            (sys.memory_store_mib > 0 ? memory_stores.path : a.out + "/stores") + "/" + workload +
            "-" + sys.label + "-c" + std::to_string(c);
        if (port <= 0) {
          std::filesystem::remove_all(store, ec);
          ServerOptions so;
          so.model_dir = a.model;
          so.store_dir = store;
          so.port = 0;
          so.system = sys.system;
          so.budget = sys.budget;
          so.cache_bytes = a.cache_mib << 20;
          so.max_running = a.max_running > 0 ? a.max_running : max_c;
          so.max_queue = std::max(16, max_c);
          so.store_min_tokens = 16;
          so.store_max_bytes = sys.memory_store_mib << 20;
          so.pack_weights = a.pack_weights;
          auto started = Server::Start(so);
          if (!started.ok()) return Fail(started.status());
          server = std::move(started).value();
          if (Status st = server->WaitReady(); !st.ok()) return Fail(st);
          port = server->port();
        }
        WorkloadRun run(a, corpus, **tok, workload, sys, port);
        std::cerr << workload << " " << sys.label << " c=" << c << ": warm-up\n";
        if (Status st = run.WarmUp(); !st.ok()) return Fail(st);
        // Where the server's compute went during the measured requests (a row whose server
        // runs elsewhere, --port, reads that server's counters the same way).
        const char* kinds[] = {"decode", "prefill", "store"};
        auto compute_seconds = [&](const char* kind) {
          return FetchMetric(a.host, port,
                             std::string("ckv_compute_seconds_total{kind=\"") + kind + "\"}");
        };
        double compute0[3];
        for (int k = 0; k < 3; ++k) compute0[k] = compute_seconds(kinds[k]);
        // Stores the row leaves behind (pending at its end, or skipped for a full queue) are
        // compute its wall time did not pay: counted, so a row cannot look faster by them.
        // The writer counts prefixes written (an answer stores up to two: its prompt and its
        // whole context) but skips and queues whole contexts, so the units differ.
        auto store_writes = [&](const char* result) {
          return FetchMetric(a.host, port,
                             std::string("ckv_store_writes_total{result=\"") + result + "\"}");
        };
        const double stored0 = store_writes("stored");
        const double skipped0 = store_writes("skipped_queue_full");
        const double steps0 = FetchMetric(a.host, port, "ckv_decode_steps_total");
        const double rows0 = FetchMetric(a.host, port, "ckv_decode_rows_total");
        const auto t0 = Clock::now();
        json rows = run.Measure(c);
        const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
        const double steps = FetchMetric(a.host, port, "ckv_decode_steps_total") - steps0;
        const double drows = FetchMetric(a.host, port, "ckv_decode_rows_total") - rows0;
        json s = Summarize(rows, wall);
        s["workload"] = workload;
        s["system"] = sys.label;
        s["concurrency"] = c;
        s["temperature"] = a.temperature;
        s["think_ms"] = a.think_ms;
        if (a.port <= 0) s["pack_weights"] = a.pack_weights;
        s["mean_decode_batch"] = steps > 0 ? drows / steps : 0;
        for (int k = 0; k < 3; ++k) {
          const double spent = compute_seconds(kinds[k]) - compute0[k];
          s[std::string("compute_share_") + kinds[k]] = wall > 0 ? spent / wall : 0;
          if (k == 0) s["decode_step_ms_mean"] = steps > 0 ? spent * 1e3 / steps : 0;
        }
        s["stores_done"] = store_writes("stored") - stored0;
        s["contexts_skipped"] = store_writes("skipped_queue_full") - skipped0;
        s["contexts_pending_at_end"] = FetchMetric(a.host, port, "ckv_store_pending");
        s["peak_rss_mib"] = PeakRssKiB() / 1024.0;
        std::cerr << "  " << s.dump() << "\n";
        for (auto& r : rows) {
          r["workload"] = workload;
          r["system"] = sys.label;
          r["concurrency"] = c;
          all_rows.push_back(r);
        }
        summary.push_back(s);
        if (server) server->Stop();
        if (sys.memory_store_mib > 0) std::filesystem::remove_all(store, ec);
      }
    }
  }
  const std::vector<std::string> request_fields = {
      "workload",      "system",      "concurrency", "user",
      "turn",          "think_ms",    "ok",          "prompt_tokens",
      "ttft_ms",       "mean_itl_ms", "e2e_ms",      "output_tokens",
      "cached_tokens", "ssd_bytes",   "queue_ms",    "server_ttft_ms",
      "error"};
  const std::vector<std::string> summary_fields = {"workload",
                                                   "system",
                                                   "concurrency",
                                                   "requests",
                                                   "errors",
                                                   "wall_s",
                                                   "output_tokens_per_s",
                                                   "ttft_p50_ms",
                                                   "ttft_p95_ms",
                                                   "ttft_p99_ms",
                                                   "itl_p50_ms",
                                                   "itl_p95_ms",
                                                   "e2e_p50_ms",
                                                   "cached_fraction",
                                                   "ssd_bytes_per_request",
                                                   "mean_decode_batch",
                                                   "decode_step_ms_mean",
                                                   "compute_share_decode",
                                                   "compute_share_prefill",
                                                   "compute_share_store",
                                                   "stores_done",
                                                   "contexts_skipped",
                                                   "contexts_pending_at_end",
                                                   "peak_rss_mib",
                                                   "temperature",
                                                   "think_ms",
                                                   "pack_weights"};
  if (Status st = WriteBenchTables(a.out, all_rows, request_fields, summary, summary_fields);
      !st.ok()) {
    return Fail(st);
  }
  if (!a.no_plots) RenderPlots("bench/plot_serve.py", a.out);
  std::cout << summary.dump(1) << "\n";
  return 0;
}

}  // namespace

void RegisterBenchServe(CLI::App& bench, std::vector<Command>& out) {
  auto a = std::make_shared<ServeBenchArgs>();
  CLI::App* app = bench.add_subcommand(
      "serve",
      "Many users against ckv serve over HTTP: TTFT p50/p95/p99, inter-token latency, output "
      "tokens/s, cached-token fraction, SSD bytes per request, per system and concurrency");
  app->add_option("--model", a->model, "Model directory")->capture_default_str();
  app->add_option("--text", a->text, "Text the prompts are cut from (default: the bundled novel)");
  app->add_option("--workloads", a->workloads,
                  "shared-prefix (many users, few long shared prefixes) and/or multiturn "
                  "(conversations over a document: each turn's prompt is the previous one + "
                  "its answer + a question)")
      ->delimiter(',')
      ->capture_default_str();
  app->add_option("--systems", a->systems,
                  "Rows SYSTEM[:BUDGET][@mem:MIB], one server each on a fresh store: " +
                      SystemNamesHelp(" | ") +
                      " (as-lru at 1.0 is full load; recompute stores nothing; @mem:MIB keeps the "
                      "store in memory, /dev/shm, bounded to MIB: a DRAM-only prefix cache)")
      ->delimiter(',')
      ->capture_default_str();
  app->add_option("--concurrency", a->concurrency, "Users in closed loop (a list)")
      ->delimiter(',')
      ->capture_default_str();
  app->add_option("--requests", a->requests, "Measured requests per system and concurrency")
      ->capture_default_str();
  app->add_option("--prefix-tokens", a->prefix_tokens, "Tokens of each shared prefix / document")
      ->capture_default_str();
  app->add_option("--prefixes", a->prefixes, "shared-prefix: distinct shared prefixes")
      ->capture_default_str();
  app->add_option("--suffix-tokens", a->suffix_tokens, "shared-prefix: each user's own tokens")
      ->capture_default_str();
  app->add_option("--max-tokens", a->max_tokens, "Tokens generated per request")
      ->capture_default_str();
  app->add_option("--temperature", a->temperature,
                  "Sampling temperature of every request (0: greedy; OpenAI clients default to 1)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 2.0));
  app->add_option("--turns", a->turns, "multiturn: turns per conversation")->capture_default_str();
  app->add_option("--turn-tokens", a->turn_tokens, "multiturn: tokens of each question")
      ->capture_default_str();
  app->add_option("--documents", a->documents, "multiturn: distinct documents")
      ->capture_default_str();
  app->add_option("--think-ms", a->think_ms,
                  "Mean think time before each of a user's requests, ms (exponential; 0: closed "
                  "loop). Users arrive over time and read each answer before the next turn; "
                  "tokens/s then follows the offered load, not the server's capacity")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3.6e6));
  app->add_option("--max-running", a->max_running,
                  "Server's --max-running (0 = the largest concurrency)")
      ->capture_default_str();
  app->add_option("--cache-mib", a->cache_mib, "Server's memory cache of prefix KV (MiB)")
      ->capture_default_str();
  app->add_option("--timeout", a->timeout_s, "Client read timeout per request (s)")
      ->capture_default_str();
  app->add_option("--host", a->host, "With --port: the server's address")->capture_default_str();
  app->add_option("--port", a->port, "Measure a server already running there (one row)");
  app->add_flag("--pack-weights", a->pack_weights,
                "The servers it starts also keep the weights packed for GEMM (ckv serve "
                "--pack-weights)");
  app->add_flag("--no-plots", a->no_plots, "Do not render the PNG plots (bench/plot_serve.py)");
  app->add_option("--out", a->out,
                  "Output directory: requests.json/.csv, summary.json/.csv, plots, stores/")
      ->required();
  out.push_back({app, [a] { return Run(*a); }});
}

}  // namespace ckv::cli
