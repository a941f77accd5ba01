// `ckv bench serve` and `ckv bench memory` end to end through the CLI on the bundled model:
// servers started per row, users over HTTP, the files and fields promised, argument errors.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "test_util.h"

namespace ckv {
namespace {

using test::RunCli;

// Runs `bench serve` with `args` on the bundled model and story text into `dir`; returns its
// summary rows (none when it failed).
nlohmann::json BenchServe(const std::string& args, const std::string& dir) {
  const auto r = RunCli("bench serve --text " + test::TextDataDir() + "/tinystories.txt " + args +
                        " --no-plots --out " + dir);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  if (r.exit_code != 0) return nlohmann::json::array();
  return nlohmann::json::parse(test::ReadFileOrDie(dir + "/summary.json"));
}

TEST(CliBenchServe, MeasuresEverySystemAndConcurrencyOverHttp) {
  const std::string dir = test::MakeTempDir("cli-bench-serve");
  const auto summary = BenchServe(
      "--systems contiguouskv:0.5,as-lru@mem:64,recompute --concurrency 1,3 "
      "--workloads shared-prefix,multiturn --requests 6 --prefix-tokens 128 --prefixes 2 "
      "--documents 2 --turns 3 --suffix-tokens 8 --turn-tokens 8 --max-tokens 6",
      dir);
  ASSERT_EQ(summary.size(), 12u);  // 2 workloads x 3 systems x 2 concurrencies
  for (const auto& row : summary) {
    for (const char* f :
         {"ttft_p50_ms", "ttft_p95_ms", "ttft_p99_ms", "itl_p50_ms", "output_tokens_per_s",
          "cached_fraction", "ssd_bytes_per_request", "mean_decode_batch", "decode_step_ms_mean",
          "compute_share_decode", "compute_share_prefill", "compute_share_store", "stores_done",
          "contexts_skipped", "contexts_pending_at_end", "peak_rss_mib"}) {
      EXPECT_TRUE(row.contains(f)) << f;
    }
    // The server's compute, read from its counters over the measured requests: every row
    // decodes and prefills; the shares are of the row's wall time, so they add up to at most
    // one (compute runs one piece at a time) with some slack for the clock reads.
    EXPECT_GT(row["decode_step_ms_mean"].get<double>(), 0) << row.dump();
    EXPECT_GT(row["compute_share_decode"].get<double>(), 0) << row.dump();
    EXPECT_GT(row["compute_share_prefill"].get<double>(), 0) << row.dump();
    EXPECT_LE(row["compute_share_decode"].get<double>() +
                  row["compute_share_prefill"].get<double>() +
                  row["compute_share_store"].get<double>(),
              1.05)
        << row.dump();
    EXPECT_EQ(row["errors"], 0) << row.dump();
    EXPECT_EQ(row["requests"], 6) << row.dump();
    EXPECT_GT(row["output_tokens_per_s"].get<double>(), 0);
    if (row["system"] == "recompute") {
      // No store: nothing cached, nothing read.
      EXPECT_EQ(row["cached_fraction"].get<double>(), 0);
      EXPECT_EQ(row["ssd_bytes_per_request"].get<double>(), 0);
      EXPECT_EQ(row["stores_done"].get<double>() + row["contexts_skipped"].get<double>() +
                    row["contexts_pending_at_end"].get<double>(),
                0)
          << row.dump();
    } else {
      // Every answered context is stored, skipped or still waiting when the row ends: the
      // row's store work is accounted either way.
      EXPECT_GE(row["stores_done"].get<double>() + row["contexts_skipped"].get<double>() +
                    row["contexts_pending_at_end"].get<double>(),
                1)
          << row.dump();
      // The warmed-up prefixes / documents are found.
      EXPECT_GT(row["cached_fraction"].get<double>(), 0.5) << row.dump();
      EXPECT_GT(row["ssd_bytes_per_request"].get<double>(), 0) << row.dump();
    }
    if (row["concurrency"] == 1) {
      EXPECT_EQ(row["mean_decode_batch"].get<double>(), 1.0);
    }
  }
  const auto requests = nlohmann::json::parse(test::ReadFileOrDie(dir + "/requests.json"));
  EXPECT_EQ(requests.size(), 72u);
  EXPECT_TRUE(std::filesystem::exists(dir + "/summary.csv"));
  EXPECT_TRUE(std::filesystem::exists(dir + "/requests.csv"));
}

// --think-ms: each user waits a drawn think time before each request (users arriving over
// time, readers between turns); the rows say how long, and the row's wall time holds them.
TEST(CliBenchServe, ThinkTimeComesBeforeEachRequest) {
  const std::string dir = test::MakeTempDir("cli-bench-serve-think");
  const auto summary = BenchServe(
      "--systems contiguouskv:0.5 --concurrency 1 --workloads multiturn --requests 4 "
      "--prefix-tokens 128 --documents 1 --turns 2 --turn-tokens 8 --max-tokens 4 --think-ms 300",
      dir);
  ASSERT_EQ(summary.size(), 1u);
  EXPECT_EQ(summary[0]["think_ms"].get<double>(), 300);
  const auto requests = nlohmann::json::parse(test::ReadFileOrDie(dir + "/requests.json"));
  ASSERT_EQ(requests.size(), 4u);
  double thought_ms = 0;
  for (const auto& row : requests) {
    EXPECT_GT(row["think_ms"].get<double>(), 0) << row.dump();
    thought_ms += row["think_ms"].get<double>();
  }
  // One user: its requests and think times follow each other, so the row lasts at least as
  // long as it thought.
  EXPECT_GE(summary[0]["wall_s"].get<double>() * 1e3, thought_ms) << summary.dump();

  EXPECT_NE(RunCli("bench serve --think-ms -1 --out " + dir).exit_code, 0);
}

TEST(CliBenchServe, ArgumentErrorsNameTheOption) {
  const std::string dir = test::MakeTempDir("cli-bench-serve-args");
  auto r = RunCli("bench serve --systems nonsense --out " + dir);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("nonsense"), std::string::npos) << r.output;
  r = RunCli("bench serve --systems contiguouskv:1.5 --out " + dir);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("budget"), std::string::npos) << r.output;
  r = RunCli("bench serve --systems contiguouskv,recompute --port 9 --out " + dir);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--port"), std::string::npos) << r.output;
  r = RunCli("bench serve --systems as-lru@mem:0 --out " + dir);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("@mem:"), std::string::npos) << r.output;
  r = RunCli("bench serve --workloads chat --out " + dir);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("chat"), std::string::npos) << r.output;
  r = RunCli("bench serve --concurrency 0 --out " + dir);
  EXPECT_NE(r.exit_code, 0);
}

TEST(CliBenchMemory, ReportsAReadBandwidth) {
  const auto r = RunCli("bench memory --mib 32 --repeat 2 --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output.substr(r.output.find('{')));
  EXPECT_GT(j["read_gbps_best"].get<double>(), 0.1);
  EXPECT_GE(j["read_gbps_best"].get<double>(), j["read_gbps_median"].get<double>());
  EXPECT_NE(RunCli("bench memory --mib 1").exit_code, 0);
}

}  // namespace
}  // namespace ckv
