// ckv bench memory: the machine's streaming read bandwidth with the engine's threads (OpenMP,
// the runtime the kernels use), the bound on decode: one decode step reads every weight once,
// so tokens/s <= bandwidth / weight bytes.
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "cli_common.h"

namespace ckv::cli {
namespace {

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

// Sums the buffer as floats with vector loads split statically across the threads (as the
// GEMV splits weight rows): every byte read once, nothing written. The sum is returned so the
// loads cannot be optimized away.
float StreamRead(const float* data, size_t n_floats) {
  float total = 0;
  const size_t blocks = n_floats / 64;  // 4 x 16 floats per iteration
#pragma omp parallel for schedule(static) reduction(+ : total)
  for (size_t b = 0; b < blocks; ++b) {
    const float* p = data + b * 64;
#if defined(__AVX512F__)
    __m512 a0 = _mm512_load_ps(p), a1 = _mm512_load_ps(p + 16);
    __m512 a2 = _mm512_load_ps(p + 32), a3 = _mm512_load_ps(p + 48);
    total += _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
#else
    float s = 0;
    for (int i = 0; i < 64; ++i) s += p[i];
    total += s;
#endif
  }
  return total;
}

}  // namespace

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
  out.push_back(
      {app, [a]() -> int {
         if (a->mib < 16 || a->repeat < 1) {
           return Fail(Status::InvalidArgument("--mib must be >= 16, --repeat >= 1"));
         }
         const size_t bytes = static_cast<size_t>(a->mib) << 20;
         std::unique_ptr<float, FreeDeleter> buf(
             static_cast<float*>(std::aligned_alloc(64, bytes)));
         if (!buf) return Fail(Status::Internal("cannot allocate the buffer"));
         const size_t n = bytes / sizeof(float);
    // Touch every page from the threads that will read it (first-touch).
#pragma omp parallel for schedule(static)
         for (size_t i = 0; i < n / 64; ++i) {
           std::memset(buf.get() + i * 64, 0, 256);
         }
         volatile float sink = StreamRead(buf.get(), n);  // warm-up pass
         std::vector<double> gbps;
         for (int r = 0; r < a->repeat; ++r) {
           const auto t0 = std::chrono::steady_clock::now();
           sink = sink + StreamRead(buf.get(), n);
           const double s =
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
           gbps.push_back(bytes / s / 1e9);
         }
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
