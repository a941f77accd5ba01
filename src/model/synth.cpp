#include "ckv/synth.h"

#include <omp.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <vector>

#include "ckv/text_file.h"
#include "ckv/tokenizer.h"
#include "kernels/dtype.h"
#include "model/model_weights.h"
#include "model/safetensors.h"

namespace ckv {
namespace {

namespace fs = std::filesystem;

ModelConfig QwenBase() {
  ModelConfig c;
  c.arch = ModelArch::kQwen2;
  c.model_type = "qwen2";
  c.max_position_embeddings = 32768;
  c.rms_norm_eps = 1e-6f;
  c.rope_theta = 1000000.0f;
  c.attention_bias = true;
  c.bos_token_ids = {151643};
  c.eos_token_ids = {151645, 151643};
  c.torch_dtype = "bfloat16";
  return c;
}

// splitmix64: a counter-based generator, so blocks can be filled in parallel and still give
// the same weights for a seed whatever the thread count.
inline uint64_t SplitMix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Approximately N(0, 1): sum of four uniforms, rescaled (Irwin-Hall); plenty for weights.
inline float Gaussian(uint64_t counter) {
  const uint64_t a = SplitMix(counter);
  const uint64_t b = SplitMix(a);
  const float u = static_cast<float>(a & 0xffffffff) + static_cast<float>(a >> 32) +
                  static_cast<float>(b & 0xffffffff) + static_cast<float>(b >> 32);
  constexpr float kMean = 2.0f * 4294967296.0f;
  constexpr float kStd = 4294967296.0f * 0.57735027f;  // sqrt(4/12) * 2^32
  return (u - kMean) / kStd;
}

void FillTensor(const std::string& name, int64_t numel, DType dtype, uint64_t seed,
                std::vector<unsigned char>& buf) {
  buf.resize(static_cast<size_t>(numel) * DTypeSize(dtype));
  const bool is_norm = name.find("norm") != std::string::npos;
  const uint64_t stream = SplitMix(seed ^ std::hash<std::string>{}(name));
  auto* f32 = reinterpret_cast<float*>(buf.data());
  auto* u16 = reinterpret_cast<uint16_t*>(buf.data());
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < numel; ++i) {
    const float v = is_norm ? 1.0f : 0.02f * Gaussian(stream + static_cast<uint64_t>(i) * 2);
    switch (dtype) {
      case DType::kF32:
        f32[i] = v;
        break;
      case DType::kBF16:
        u16[i] = F32ToBf16(v);
        break;
      case DType::kF16:
        u16[i] = F32ToF16(v);
        break;
    }
  }
}

Status CopyTokenizer(const std::string& from, const std::string& to, int vocab_size) {
  auto tok = Tokenizer::FromDirectory(from);
  if (!tok.ok()) return tok.status().WithContext("synth: tokenizer " + from);
  if ((*tok)->vocab_size() > vocab_size) return Status::OK();  // does not fit: ids-only model
  std::error_code ec;
  for (const char* f : {"tokenizer.json", "tokenizer.json.gz", "tokenizer_config.json", "NOTICE"}) {
    const fs::path src = fs::path(from) / f;
    if (!fs::exists(src)) continue;
    fs::copy_file(src, fs::path(to) / f, fs::copy_options::overwrite_existing, ec);
    if (ec) return Status::IOError("synth: copying " + src.string() + ": " + ec.message());
  }
  return Status::OK();
}

}  // namespace

std::optional<ModelConfig> NamedConfig(const std::string& name) {
  ModelConfig c = QwenBase();
  if (name == "qwen2.5-0.5b") {
    c.hidden_size = 896, c.intermediate_size = 4864, c.num_layers = 24, c.num_heads = 14,
    c.num_kv_heads = 2, c.vocab_size = 151936, c.tie_word_embeddings = true;
  } else if (name == "qwen2.5-1.5b") {
    c.hidden_size = 1536, c.intermediate_size = 8960, c.num_layers = 28, c.num_heads = 12,
    c.num_kv_heads = 2, c.vocab_size = 151936, c.tie_word_embeddings = true;
  } else if (name == "qwen2.5-7b") {
    c.hidden_size = 3584, c.intermediate_size = 18944, c.num_layers = 28, c.num_heads = 28,
    c.num_kv_heads = 4, c.vocab_size = 152064, c.tie_word_embeddings = false;
    c.max_position_embeddings = 32768;
  } else {
    return std::nullopt;
  }
  c.head_dim = c.hidden_size / c.num_heads;
  return c;
}

Status SynthesizeModel(const ModelConfig& config, const std::string& out_dir,
                       const SynthOptions& opts) {
  DType dtype;
  ModelConfig cfg = config;
  if (opts.dtype == "bf16") {
    dtype = DType::kBF16;
    cfg.torch_dtype = "bfloat16";
  } else if (opts.dtype == "f16") {
    dtype = DType::kF16;
    cfg.torch_dtype = "float16";
  } else if (opts.dtype == "f32") {
    dtype = DType::kF32;
    cfg.torch_dtype = "float32";
  } else {
    return Status::InvalidArgument("synth: dtype \"" + opts.dtype + "\" is not bf16, f16 or f32");
  }
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) return Status::IOError("synth: cannot create " + out_dir + ": " + ec.message());
  CKV_RETURN_IF_ERROR(WriteTextFile(out_dir + "/config.json", cfg.ToJsonText()));

  // Group tensors into shards of bounded size, in file order.
  const auto expected = ExpectedTensors(cfg);
  std::vector<std::vector<size_t>> shards(1);
  int64_t shard_bytes = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    int64_t numel = 1;
    for (int64_t d : expected[i].second) numel *= d;
    const int64_t bytes = numel * static_cast<int64_t>(DTypeSize(dtype));
    if (shard_bytes > 0 && shard_bytes + bytes > opts.max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(i);
    shard_bytes += bytes;
  }
  nlohmann::json weight_map = nlohmann::json::object();
  for (size_t s = 0; s < shards.size(); ++s) {
    const std::string file = shards.size() == 1
                                 ? "model.safetensors"
                                 : "model-" + std::string(5 - std::to_string(s + 1).size(), '0') +
                                       std::to_string(s + 1) + "-of-" +
                                       std::string(5 - std::to_string(shards.size()).size(), '0') +
                                       std::to_string(shards.size()) + ".safetensors";
    std::vector<std::vector<unsigned char>> buffers(shards[s].size());
    std::vector<TensorView> views;
    for (size_t j = 0; j < shards[s].size(); ++j) {
      const auto& [name, shape] = expected[shards[s][j]];
      TensorView v;
      v.name = name;
      v.dtype = dtype;
      v.shape = shape;
      FillTensor(name, v.numel(), dtype, opts.seed, buffers[j]);
      v.data = buffers[j].data();
      v.nbytes = buffers[j].size();
      views.push_back(std::move(v));
      weight_map[name] = file;
    }
    CKV_RETURN_IF_ERROR(WriteSafetensors(out_dir + "/" + file, views, {{"format", "pt"}}));
  }
  if (shards.size() == 1) {
    fs::remove(out_dir + "/model.safetensors.index.json", ec);  // stale from an earlier run
  } else {
    nlohmann::json index{{"metadata", nlohmann::json::object()}, {"weight_map", weight_map}};
    CKV_RETURN_IF_ERROR(WriteTextFile(out_dir + "/model.safetensors.index.json", index.dump(2)));
  }
  if (!opts.tokenizer_dir.empty()) {
    CKV_RETURN_IF_ERROR(CopyTokenizer(opts.tokenizer_dir, out_dir, cfg.vocab_size));
  }
  return Status::OK();
}

}  // namespace ckv
