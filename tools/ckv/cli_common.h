// Shared pieces of the ckv subcommands: model loading, id lists, error exits.
#pragma once

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ckv/model.h"
#include "ckv/prefix_store.h"
#include "ckv/reprefill.h"
#include "ckv/status.h"
#include "data_dir.h"

namespace ckv::cli {

// The bundled default model (used when --model is not given).
std::string DefaultModelDir();

// Prints "error: <status>" to stderr and returns exit code 1.
int Fail(const Status& status);

// How a command loads its model. --mmap-weights maps the weight files instead of reading them
// into resident memory at load (ModelOptions::resident_weights): less memory held and a faster
// start, slower decode (4 KiB page-cache pages); for machines short of memory.
struct ModelLoadArgs {
  bool pack_weights = false;
  bool mmap_weights = false;
  // Adds --mmap-weights, and --pack-weights when `with_pack`.
  void AddTo(CLI::App* app, bool with_pack);
  ModelOptions Options() const;
};

Result<std::unique_ptr<Model>> LoadModel(const std::string& dir, const ModelLoadArgs& load = {});

// "auto" | "bf16" | "f32" (validated by the option).
KVPrecision ResolveKV(const std::string& name, const Model& model);

// Parses "1,2,3" (spaces allowed).
Result<std::vector<int32_t>> ParseIdList(const std::string& text);

// --store and the layout flags shared by the cache / reprefill / eval commands.
struct StoreArgs {
  std::string dir;
  int chunk_tokens = 16;
  int period = 8;
  std::string layout = "period-major";  // period-major | layer-major | impress
  int64_t max_bytes = 0;
  Result<StoreLayout> Layout() const;
};
void AddStoreOptions(CLI::App& app, StoreArgs& args, bool layout = true);
Result<std::unique_ptr<PrefixStore>> OpenStore(const StoreArgs& args);
std::string FingerprintHex(uint64_t fp);
// --cache-bytes, --cache-policy, --prefetch-bytes, --io-backend, --queue-depth.
void AddEngineOptions(CLI::App& app, ReprefillEngine::Config& config);
// The system names --system accepts, from the one table (ReprefillSystemNames), joined by sep.
std::string SystemNamesHelp(const std::string& sep);

// Each subcommand registers itself on the app and sets `run` to its action.
struct Command {
  CLI::App* app = nullptr;
  std::function<int()> run;
};

void RegisterGenerate(CLI::App& root, std::vector<Command>& out);
void RegisterTokenize(CLI::App& root, std::vector<Command>& out);
void RegisterLogits(CLI::App& root, std::vector<Command>& out);
void RegisterModel(CLI::App& root, std::vector<Command>& out);
void RegisterBench(CLI::App& root, std::vector<Command>& out);
void RegisterCache(CLI::App& root, std::vector<Command>& out);
void RegisterReprefill(CLI::App& root, std::vector<Command>& out);
void RegisterEval(CLI::App& root, std::vector<Command>& out);
void RegisterEvalPerplexity(CLI::App& eval, std::vector<Command>& out);

// Seconds elapsed since t0 (steady clock): what every benchmark times with.
inline double SecondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The whole file named by a --text option; NotFound naming it when it cannot be read.
Result<std::string> ReadTextArg(const std::string& path);

// "\r42%" on stderr per call (nothing when quiet, e.g. for --json output).
std::function<void(double)> ProgressOnStderr(bool quiet);
void RegisterServe(CLI::App& root, std::vector<Command>& out);
// `bench io` (cmd_bench_io.cpp), added by RegisterBench.
void RegisterBenchIo(CLI::App& bench, std::vector<Command>& out);
void RegisterBenchStore(CLI::App& bench, std::vector<Command>& out);
// `bench reprefill` (cmd_bench_reprefill.cpp), added by RegisterBench.
void RegisterBenchReprefill(CLI::App& bench, std::vector<Command>& out);
// `bench memory` (cmd_bench_memory.cpp): streaming read bandwidth.
void RegisterBenchMemory(CLI::App& bench, std::vector<Command>& out);
// `bench tokenizer` (cmd_bench_tokenizer.cpp): encode/decode speed of a model's tokenizer.
void RegisterBenchTokenizer(CLI::App& bench, std::vector<Command>& out);
// `bench serve` (cmd_bench_serve.cpp): many users against ckv serve over HTTP.
void RegisterBenchServe(CLI::App& bench, std::vector<Command>& out);

}  // namespace ckv::cli
