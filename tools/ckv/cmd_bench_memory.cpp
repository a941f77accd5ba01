// ckv bench memory: the machine's streaming read bandwidth with the engine's threads (OpenMP,
// the runtime the kernels use), the bound on decode: one decode step reads every weight once,
// so tokens/s <= bandwidth / weight bytes.
#include <omp.h>

#include <algorithm>
#include <iostream>
#include <nlohmann/json.hpp>
#include <vector>

#include "cli_common.h"
#include "memory_read.h"

namespace ckv::cli {

void RegisterBenchMemory(CLI::App& bench, std::vector<Command>& out) {
  struct Args {
    int64_t mib = 1024;
    int repeat = 10;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* app = bench.add_subcommand(
      "memory", "Streaming read bandwidth with the engine's threads (the bound on decode)");
  app->add_option("--mib", a->mib, "Buffer size (MiB; well above the last-level cache)")
      ->capture_default_str();
  app->add_option("--repeat", a->repeat, "Timed passes (best and median reported)")
      ->capture_default_str();
  app->add_flag("--json", a->json, "Print JSON on one line");
  out.push_back({app, [a]() -> int {
                   if (a->mib < 16 || a->repeat < 1) {
                     return Fail(Status::InvalidArgument("--mib must be >= 16, --repeat >= 1"));
                   }
                   auto buf = ReadBuffer::Create(static_cast<size_t>(a->mib) << 20);
                   if (!buf.ok()) return Fail(buf.status());
                   std::vector<double> gbps;
                   for (int r = 0; r < a->repeat; ++r) gbps.push_back(buf->ReadPassGbps());
                   std::sort(gbps.begin(), gbps.end());
                   nlohmann::json j{{"threads", omp_get_max_threads()},
                                    {"buffer_mib", a->mib},
                                    {"read_gbps_best", gbps.back()},
                                    {"read_gbps_median", gbps[gbps.size() / 2]}};
                   std::cout << (a->json ? j.dump() : j.dump(2)) << "\n";
                   return 0;
                 }});
}

}  // namespace ckv::cli
