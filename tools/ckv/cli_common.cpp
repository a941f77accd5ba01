#include "cli_common.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

namespace ckv::cli {

std::string DefaultModelDir() {
  return DataPath("models/stories260k");
}

int Fail(const Status& status) {
  std::cerr << "error: " << status.ToString() << "\n";
  return 1;
}

void ModelLoadArgs::AddTo(CLI::App* app, bool with_pack) {
  if (with_pack) {
    app->add_flag("--pack-weights", pack_weights, "Reorder weights for the GEMM library at load");
  }
  app->add_flag("--mmap-weights", mmap_weights,
                "Map the weight files instead of reading them into memory at load (less memory "
                "held, slower decode)");
}

ModelOptions ModelLoadArgs::Options() const {
  ModelOptions opts;
  opts.pack_weights = pack_weights;
  opts.resident_weights = !mmap_weights;
  return opts;
}

Result<std::unique_ptr<Model>> LoadModel(const std::string& dir, const ModelLoadArgs& load) {
  if (dir.empty()) {
    // --model was not given and no bundled model was found beside the binary.
    return FindDataDir().status().WithContext("no --model given");
  }
  ModelOptions opts = load.Options();
  opts.require_tokenizer = false;
  return Model::Load(dir, opts);
}

Result<StoreLayout> StoreArgs::Layout() const {
  if (chunk_tokens <= 0) return Status::InvalidArgument("--chunk-tokens must be > 0");
  if (period <= 0) return Status::InvalidArgument("--period must be > 0");
  if (layout == "period-major") return StoreLayout::PeriodMajor(chunk_tokens, period);
  if (layout == "layer-major") return StoreLayout::LayerMajor(chunk_tokens);
  if (layout == "impress") return StoreLayout::Impress(chunk_tokens == 16 ? 64 : chunk_tokens);
  return Status::InvalidArgument("--layout must be period-major, layer-major or impress");
}

void AddStoreOptions(CLI::App& app, StoreArgs& args, bool layout) {
  app.add_option("--store", args.dir, "Prefix store directory (created if missing)")->required();
  app.add_option("--store-max-bytes", args.max_bytes,
                 "Bound on the store's data; least-recently-used prefixes are dropped (0 = none)")
      ->capture_default_str();
  if (!layout) return;
  app.add_option("--chunk-tokens", args.chunk_tokens, "Tokens per ContiguousChunk (c)")
      ->capture_default_str();
  app.add_option("--period", args.period, "Layers per period (p)")->capture_default_str();
  app.add_option("--layout", args.layout,
                 "period-major | layer-major | impress (64-token K/V chunks)")
      ->capture_default_str();
}

Result<std::unique_ptr<PrefixStore>> OpenStore(const StoreArgs& args) {
  StoreOptions so;
  so.max_bytes = args.max_bytes;
  return PrefixStore::Open(args.dir, so);
}

void AddEngineOptions(CLI::App& app, ReprefillEngine::Config& config) {
  app.add_option("--cache-bytes", config.cache_bytes, "Memory cache of prefix KV (0 = off)")
      ->capture_default_str();
  app.add_option("--cache-policy", config.cache_policy, "attention (S = I x F) | lru | impress")
      ->capture_default_str();
  app.add_option("--prefetch-bytes", config.prefetch_bytes,
                 "Bound on prefetch buffers held at once")
      ->capture_default_str();
  app.add_option("--io-backend", config.io_backend, "auto | uring | threads")
      ->capture_default_str();
  app.add_option("--queue-depth", config.io_queue_depth, "I/O queue depth")->capture_default_str();
  app.add_option("--io-bandwidth-cap", config.io_bandwidth_cap_mbps,
                 "Emulate a device of this many MB/s (10^6 bytes): reads complete no sooner than "
                 "it would finish them (a simulation of the I/O-bound regime; 0 = the real disk)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
}

std::string SystemNamesHelp(const std::string& sep) {
  std::string out;
  for (const std::string& name : ReprefillSystemNames()) out += (out.empty() ? "" : sep) + name;
  return out;
}

std::string FingerprintHex(uint64_t fp) {
  char buf[20];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(fp));
  return buf;
}

Result<std::string> ReadTextArg(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return Status::InvalidArgument("--text " + path + " is a directory, not a file");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("cannot read --text " + path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return Status::IOError("error reading --text " + path);
  return text;
}

std::function<void(double)> ProgressOnStderr(bool quiet) {
  if (quiet) return {};
  return [](double f) { std::cerr << "\r" << static_cast<int>(f * 100) << "%" << std::flush; };
}

KVPrecision ResolveKV(const std::string& name, const Model& model) {
  if (name == "bf16") return KVPrecision::kBF16;
  if (name == "f32") return KVPrecision::kF32;
  return model.DefaultKVPrecision();
}

Result<std::vector<int32_t>> ParseIdList(const std::string& text) {
  std::vector<int32_t> ids;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const auto b = item.find_first_not_of(" \t");
    const auto e = item.find_last_not_of(" \t");
    if (b == std::string::npos)
      return Status::InvalidArgument("--ids: empty item in \"" + text + "\"");
    item = item.substr(b, e - b + 1);
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || v < INT32_MIN || v > INT32_MAX) {
      return Status::InvalidArgument("--ids: \"" + item + "\" is not an integer token id");
    }
    ids.push_back(static_cast<int32_t>(v));
  }
  return ids;
}

}  // namespace ckv::cli
