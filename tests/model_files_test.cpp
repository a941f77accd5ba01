// Model-file loading: config.json, safetensors (single, sharded, hostile), weight binding and
// the F16/BF16 conversions the loaders rely on.
#include <gtest/gtest.h>
#include <immintrin.h>
#include <signal.h>
#include <sys/resource.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>

#include "ckv/model_config.h"
#include "common/mmap_file.h"
#include "kernels/dtype.h"
#include "model/model_weights.h"
#include "model/safetensors.h"
#include "test_util.h"

namespace ckv {
namespace {

::testing::AssertionResult Contains(const char* h_expr, const char* n_expr,
                                    const std::string& haystack, const std::string& needle) {
  if (haystack.find(needle) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << h_expr << " = \"" << haystack << "\"\ndoes not contain "
                                       << n_expr << " = \"" << needle << "\"";
}
#define EXPECT_CONTAINS(haystack, needle) EXPECT_PRED_FORMAT2(Contains, haystack, needle)

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

// A safetensors file from a literal header and `data_bytes` zero bytes of data.
std::string RawSafetensors(const std::string& header, size_t data_bytes) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(n >> (8 * i));
  return out + header + std::string(data_bytes, '\0');
}

template <typename R>
std::string ErrorOf(const R& r) {
  EXPECT_FALSE(r.ok());
  return r.ok() ? std::string("<ok>") : r.status().message();
}

// Writes `header` + data into a fresh file and returns the open error.
std::string OpenRawError(const std::string& header, size_t data_bytes, std::string* path_out) {
  const std::string dir = test::MakeTempDir("st-bad");
  *path_out = dir + "/bad.safetensors";
  WriteBytes(*path_out, RawSafetensors(header, data_bytes));
  return ErrorOf(SafetensorsSet::OpenFile(*path_out));
}

float BitsF32(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

// ---------------------------------------------------------------- dtype

TEST(DType, NamesRoundTrip) {
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16}) {
    ASSERT_TRUE(ParseDType(DTypeName(t)).has_value());
    EXPECT_EQ(*ParseDType(DTypeName(t)), t);
  }
  EXPECT_FALSE(ParseDType("I8").has_value());
  EXPECT_FALSE(ParseDType("f32").has_value());
  EXPECT_FALSE(ParseDType("F64").has_value());
  EXPECT_EQ(DTypeSize(DType::kF32), 4u);
  EXPECT_EQ(DTypeSize(DType::kBF16), 2u);
}

TEST(DType, F16EveryValueRoundTrips) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = F16ToF32(static_cast<uint16_t>(h));
    const bool is_nan = (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0;
    if (is_nan) {
      EXPECT_TRUE(std::isnan(f)) << h;
      const uint16_t back = F32ToF16(f);
      EXPECT_TRUE((back & 0x7c00u) == 0x7c00u && (back & 0x3ffu) != 0) << h;
    } else {
      ASSERT_EQ(F32ToF16(f), h) << "h=" << h << " f=" << f;
    }
  }
}

TEST(DType, F16KnownValues) {
  EXPECT_EQ(F16ToF32(0x3c00), 1.0f);
  EXPECT_EQ(F16ToF32(0xc000), -2.0f);
  EXPECT_EQ(F16ToF32(0x7bff), 65504.0f);
  EXPECT_EQ(F16ToF32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(F16ToF32(0x03ff), std::ldexp(1023.0f, -24));
  EXPECT_EQ(F16ToF32(0x0400), std::ldexp(1.0f, -14));
  EXPECT_TRUE(std::isinf(F16ToF32(0x7c00)) && F16ToF32(0x7c00) > 0);
  EXPECT_TRUE(std::isinf(F16ToF32(0xfc00)) && F16ToF32(0xfc00) < 0);
  EXPECT_TRUE(std::isnan(F16ToF32(0x7e00)));
  EXPECT_TRUE(std::signbit(F16ToF32(0x8000)));

  EXPECT_EQ(F32ToF16(0.0f), 0x0000);
  EXPECT_EQ(F32ToF16(-0.0f), 0x8000);
  EXPECT_EQ(F32ToF16(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_EQ(F32ToF16(-std::numeric_limits<float>::infinity()), 0xfc00);
  const uint16_t nan = F32ToF16(std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(nan & 0x7c00, 0x7c00);
  EXPECT_NE(nan & 0x3ff, 0);
  // A signalling NaN whose payload lives only in the low bits must not become inf.
  const uint16_t snan = F32ToF16(BitsF32(0x7f800001u));
  EXPECT_NE(snan & 0x3ff, 0);
  // Overflow: 65520 is the tie between 65504 and 65536 and goes to inf (65504 is odd).
  EXPECT_EQ(F32ToF16(65504.0f), 0x7bff);
  EXPECT_EQ(F32ToF16(65519.996f), 0x7bff);
  EXPECT_EQ(F32ToF16(65520.0f), 0x7c00);
  EXPECT_EQ(F32ToF16(1e10f), 0x7c00);
  EXPECT_EQ(F32ToF16(-1e10f), 0xfc00);
  // Ties to even in the normal range.
  EXPECT_EQ(F32ToF16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  EXPECT_EQ(F32ToF16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  EXPECT_EQ(F32ToF16(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)), 0x3c01);
  // Subnormals, underflow and its ties.
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -25)), 0x0000);  // tie between 0 and 1 -> 0
  EXPECT_EQ(F32ToF16(std::ldexp(1.0001f, -25)), 0x0001);
  EXPECT_EQ(F32ToF16(3 * std::ldexp(1.0f, -25)), 0x0002);  // tie between 1 and 2 -> 2
  EXPECT_EQ(F32ToF16(5 * std::ldexp(1.0f, -25)), 0x0002);  // tie between 2 and 3 -> 2
  EXPECT_EQ(F32ToF16(-std::ldexp(1.0f, -24)), 0x8001);
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -30)), 0x0000);
  EXPECT_EQ(F32ToF16(std::numeric_limits<float>::denorm_min()), 0x0000);
  // Largest subnormal + half an ulp is a tie between 0x03ff and 0x0400: goes to even 0x0400.
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -14) - std::ldexp(1.0f, -25)), 0x0400);
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -14)), 0x0400);
}

__attribute__((target("f16c"))) uint16_t HardwareF32ToF16(float f) {
  return static_cast<uint16_t>(_cvtss_sh(f, 0));  // 0 = round to nearest even
}

TEST(DType, F16MatchesHardwareOnRandomFloats) {
  if (!__builtin_cpu_supports("f16c")) GTEST_SKIP() << "no F16C on this CPU";
  std::mt19937 rng(7);
  // Exponents concentrated around the half range so subnormal, normal and overflow all occur.
  std::uniform_int_distribution<uint32_t> mant(0, 0x7fffff), exp(90, 150), sign(0, 1);
  for (int i = 0; i < 2'000'000; ++i) {
    const uint32_t bits = (sign(rng) << 31) | (exp(rng) << 23) | mant(rng);
    const float f = BitsF32(bits);
    ASSERT_EQ(F32ToF16(f), HardwareF32ToF16(f)) << std::hex << "bits=0x" << bits;
  }
}

TEST(DType, Bf16Conversions) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = Bf16ToF32(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(Bf16ToF32(F32ToBf16(f))));
    } else {
      ASSERT_EQ(F32ToBf16(f), h);
    }
  }
  EXPECT_EQ(F32ToBf16(1.0f), 0x3f80);
  EXPECT_EQ(F32ToBf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);      // tie -> even
  EXPECT_EQ(F32ToBf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);  // tie -> even
  EXPECT_EQ(F32ToBf16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_TRUE(std::isnan(Bf16ToF32(F32ToBf16(BitsF32(0x7f800001u)))));
  EXPECT_EQ(F32ToBf16(std::numeric_limits<float>::max()), 0x7f80);  // rounds up to inf
}

// ---------------------------------------------------------------- mmap

TEST(MmapFile, EmptyMissingAndDirectory) {
  const std::string dir = test::MakeTempDir("mmap");
  WriteBytes(dir + "/empty", "");
  auto empty = MmapFile::Open(dir + "/empty");
  ASSERT_TRUE(empty.ok()) << empty.status().ToString();
  EXPECT_EQ((*empty)->size(), 0u);
  EXPECT_EQ((*empty)->data(), nullptr);

  WriteBytes(dir + "/abc", "abc");
  auto abc = MmapFile::Open(dir + "/abc");
  ASSERT_TRUE(abc.ok());
  ASSERT_EQ((*abc)->size(), 3u);
  EXPECT_EQ(std::memcmp((*abc)->data(), "abc", 3), 0);

  auto missing = MmapFile::Open(dir + "/nope");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_CONTAINS(ErrorOf(missing), dir + "/nope");
  EXPECT_CONTAINS(ErrorOf(MmapFile::Open(dir)), dir);
}

// ---------------------------------------------------------------- config

constexpr const char* kQwen05Config = R"({
  "architectures": ["Qwen2ForCausalLM"],
  "attention_dropout": 0.0,
  "bos_token_id": 151643,
  "eos_token_id": 151645,
  "hidden_act": "silu",
  "hidden_size": 896,
  "initializer_range": 0.02,
  "intermediate_size": 4864,
  "max_position_embeddings": 32768,
  "max_window_layers": 21,
  "model_type": "qwen2",
  "num_attention_heads": 14,
  "num_hidden_layers": 24,
  "num_key_value_heads": 2,
  "rms_norm_eps": 1e-06,
  "rope_scaling": null,
  "rope_theta": 1000000.0,
  "sliding_window": 32768,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.43.1",
  "use_cache": true,
  "use_sliding_window": false,
  "vocab_size": 151936
})";

void ExpectSameConfig(const ModelConfig& a, const ModelConfig& b) {
  EXPECT_EQ(a.arch, b.arch);
  EXPECT_EQ(a.model_type, b.model_type);
  EXPECT_EQ(a.hidden_size, b.hidden_size);
  EXPECT_EQ(a.intermediate_size, b.intermediate_size);
  EXPECT_EQ(a.num_layers, b.num_layers);
  EXPECT_EQ(a.num_heads, b.num_heads);
  EXPECT_EQ(a.num_kv_heads, b.num_kv_heads);
  EXPECT_EQ(a.head_dim, b.head_dim);
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.max_position_embeddings, b.max_position_embeddings);
  EXPECT_EQ(a.rms_norm_eps, b.rms_norm_eps);
  EXPECT_EQ(a.rope_theta, b.rope_theta);
  EXPECT_EQ(a.tie_word_embeddings, b.tie_word_embeddings);
  EXPECT_EQ(a.attention_bias, b.attention_bias);
  EXPECT_EQ(a.bos_token_ids, b.bos_token_ids);
  EXPECT_EQ(a.eos_token_ids, b.eos_token_ids);
  EXPECT_EQ(a.torch_dtype, b.torch_dtype);
}

TEST(ModelConfig, Qwen2_05B) {
  auto c = ModelConfig::FromJsonText(kQwen05Config, "qwen/config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->arch, ModelArch::kQwen2);
  EXPECT_EQ(c->model_type, "qwen2");
  EXPECT_EQ(c->hidden_size, 896);
  EXPECT_EQ(c->intermediate_size, 4864);
  EXPECT_EQ(c->num_layers, 24);
  EXPECT_EQ(c->num_heads, 14);
  EXPECT_EQ(c->num_kv_heads, 2);
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_EQ(c->vocab_size, 151936);
  EXPECT_EQ(c->max_position_embeddings, 32768);
  EXPECT_EQ(c->rms_norm_eps, 1e-6f);
  EXPECT_EQ(c->rope_theta, 1000000.0f);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_TRUE(c->attention_bias);
  EXPECT_EQ(c->bos_token_ids, std::vector<int32_t>{151643});
  EXPECT_EQ(c->eos_token_ids, std::vector<int32_t>{151645});
  EXPECT_EQ(c->torch_dtype, "bfloat16");
  EXPECT_EQ(c->q_dim(), 896);
  EXPECT_EQ(c->kv_dim(), 128);
  EXPECT_EQ(c->kv_bytes_per_token_layer(2), 512);
  // Embeddings + 24 x (2 norms, 4 projections, 3 biases, 3 MLP) + final norm; head tied.
  EXPECT_EQ(ExpectedTensors(*c).size(), 1u + 24 * 12 + 1);
}

TEST(ModelConfig, DefaultsAndTokenIdForms) {
  auto llama = ModelConfig::FromJsonText(
      R"({"model_type":"llama","hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,
          "num_attention_heads":4,"vocab_size":100,"eos_token_id":[2,3],"bos_token_id":null})",
      "l.json");
  ASSERT_TRUE(llama.ok()) << llama.status().ToString();
  EXPECT_EQ(llama->num_kv_heads, 4);
  EXPECT_EQ(llama->head_dim, 16);
  EXPECT_EQ(llama->rms_norm_eps, 1e-6f);
  EXPECT_EQ(llama->rope_theta, 10000.0f);
  EXPECT_EQ(llama->max_position_embeddings, 2048);
  EXPECT_FALSE(llama->tie_word_embeddings);
  EXPECT_FALSE(llama->attention_bias);
  EXPECT_TRUE(llama->bos_token_ids.empty());
  EXPECT_EQ(llama->eos_token_ids, (std::vector<int32_t>{2, 3}));
  EXPECT_EQ(ExpectedTensors(*llama).size(), 1u + 2 * 9 + 2);

  auto qwen = ModelConfig::FromJsonText(
      R"({"model_type":"qwen2","hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,
          "num_attention_heads":4,"num_key_value_heads":2,"vocab_size":100,
          "rope_scaling":{"rope_type":"default"}})",
      "q.json");
  ASSERT_TRUE(qwen.ok()) << qwen.status().ToString();
  EXPECT_EQ(qwen->max_position_embeddings, 32768);
  EXPECT_TRUE(qwen->attention_bias);

  // head_dim given explicitly may disagree with hidden / heads (as in Qwen3-style configs).
  auto explicit_hd = ModelConfig::FromJsonText(
      R"({"model_type":"llama","hidden_size":64,"intermediate_size":128,"num_hidden_layers":1,
          "num_attention_heads":6,"num_key_value_heads":2,"head_dim":8,"vocab_size":10})",
      "h.json");
  ASSERT_TRUE(explicit_hd.ok()) << explicit_hd.status().ToString();
  EXPECT_EQ(explicit_hd->q_dim(), 48);
}

TEST(ModelConfig, ToJsonTextRoundTrips) {
  auto qwen = ModelConfig::FromJsonText(kQwen05Config, "q.json");
  ASSERT_TRUE(qwen.ok());
  const std::string text = qwen->ToJsonText();
  EXPECT_CONTAINS(text, "Qwen2ForCausalLM");
  auto back = ModelConfig::FromJsonText(text, "q2.json");
  ASSERT_TRUE(back.ok()) << back.status().ToString() << "\n" << text;
  ExpectSameConfig(*qwen, *back);

  auto llama = ModelConfig::FromFile(test::BundledModelDir() + "/config.json");
  ASSERT_TRUE(llama.ok()) << llama.status().ToString();
  llama->eos_token_ids = {2, 7};
  llama->bos_token_ids.clear();
  llama->attention_bias = true;
  llama->rms_norm_eps = 1e-5f;
  const std::string ltext = llama->ToJsonText();
  EXPECT_CONTAINS(ltext, "LlamaForCausalLM");
  EXPECT_CONTAINS(ltext, "1e-05");  // shortest form, not 9.99999974e-06
  auto lback = ModelConfig::FromJsonText(ltext, "l2.json");
  ASSERT_TRUE(lback.ok()) << lback.status().ToString() << "\n" << ltext;
  ExpectSameConfig(*llama, *lback);
}

// Replaces or adds one field of the Qwen2.5-0.5B config and returns the parse error.
std::string QwenErrorWith(const std::string& field, const std::string& value_json) {
  std::string text = kQwen05Config;
  const std::string key = "\"" + field + "\":";
  const size_t at = text.find(key);
  if (at == std::string::npos) {
    text.insert(text.find('{') + 1, key + value_json + ",");
  } else {
    const size_t value_end = text.find_first_of(",\n}", text.find(':', at) + 1);
    text.replace(at, value_end - at, key + value_json);
  }
  return ErrorOf(ModelConfig::FromJsonText(text, "/m/config.json"));
}

TEST(ModelConfig, RejectsWhatWeDoNotSupport) {
  struct Case {
    std::string field, value;
  };
  const Case cases[] = {
      {"model_type", "\"gpt2\""},
      {"model_type", "3"},
      {"rope_scaling", R"({"type":"yarn","factor":4.0})"},
      {"rope_scaling", R"({"rope_type":"llama3","factor":8.0})"},
      {"rope_scaling", "\"linear\""},
      {"hidden_act", "\"gelu\""},
      {"mlp_bias", "true"},
      {"use_sliding_window", "true"},
      {"hidden_size", "0"},
      {"hidden_size", "\"896\""},
      {"hidden_size", "896.5"},
      {"hidden_size", "99999999999"},
      {"intermediate_size", "-1"},
      {"num_hidden_layers", "null"},
      {"vocab_size", "true"},
      {"num_key_value_heads", "3"},
      {"num_attention_heads", "13"},  // 896 % 13 != 0 and no head_dim
      {"head_dim", "7"},              // odd: RoPE needs pairs
      {"rms_norm_eps", "0"},
      {"rope_theta", "\"big\""},
      {"tie_word_embeddings", "1"},
      {"eos_token_id", "[1, \"x\"]"},
      {"bos_token_id", "-1"},
      {"max_position_embeddings", "0"},
  };
  for (const Case& c : cases) {
    const std::string err = QwenErrorWith(c.field, c.value);
    EXPECT_CONTAINS(err, "/m/config.json") << c.field << "=" << c.value;
    EXPECT_CONTAINS(err, c.field) << c.field << "=" << c.value;
  }
  EXPECT_CONTAINS(QwenErrorWith("model_type", "\"gpt2\""), "gpt2");
  EXPECT_CONTAINS(QwenErrorWith("rope_scaling", R"({"type":"yarn"})"), "yarn");

  // Llama ignores use_sliding_window (not a llama field); rope_scaling with type default is fine.
  auto llama = ModelConfig::FromJsonText(
      R"({"model_type":"llama","hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,
          "num_attention_heads":4,"vocab_size":100,"use_sliding_window":true,
          "rope_scaling":{"type":"default"}})",
      "l.json");
  EXPECT_TRUE(llama.ok()) << llama.status().ToString();
}

TEST(ModelConfig, BadJsonAndMissingFile) {
  for (const char* text : {"{", "", "[1,2]", "{\"model_type\": \"llama\",}", "nul"}) {
    EXPECT_CONTAINS(ErrorOf(ModelConfig::FromJsonText(text, "/x/config.json")), "/x/config.json")
        << text;
  }
  EXPECT_CONTAINS(ErrorOf(ModelConfig::FromJsonText(R"({"hidden_size":4})", "/x/config.json")),
                  "model_type");
  EXPECT_CONTAINS(
      ErrorOf(ModelConfig::FromJsonText(R"({"model_type":"llama","hidden_size":4})", "c.json")),
      "intermediate_size");
  const std::string dir = test::MakeTempDir("cfg");
  EXPECT_CONTAINS(ErrorOf(ModelConfig::FromFile(dir + "/config.json")), dir);
  WriteBytes(dir + "/config.json", "{not json");
  EXPECT_CONTAINS(ErrorOf(ModelConfig::FromFile(dir + "/config.json")), dir + "/config.json");
}

// ---------------------------------------------------------------- bundled model

TEST(BundledModel, Stories260kLoads) {
  const std::string dir = test::BundledModelDir();
  auto cfg = ModelConfig::FromFile(dir + "/config.json");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  EXPECT_EQ(cfg->arch, ModelArch::kLlama);
  EXPECT_EQ(cfg->hidden_size, 64);
  EXPECT_EQ(cfg->intermediate_size, 172);
  EXPECT_EQ(cfg->num_layers, 5);
  EXPECT_EQ(cfg->num_heads, 8);
  EXPECT_EQ(cfg->num_kv_heads, 4);
  EXPECT_EQ(cfg->head_dim, 8);
  EXPECT_EQ(cfg->vocab_size, 512);
  EXPECT_EQ(cfg->max_position_embeddings, 512);
  EXPECT_EQ(cfg->rms_norm_eps, 1e-5f);
  EXPECT_EQ(cfg->rope_theta, 10000.0f);
  EXPECT_TRUE(cfg->tie_word_embeddings);
  EXPECT_FALSE(cfg->attention_bias);
  EXPECT_EQ(cfg->bos_token_ids, std::vector<int32_t>{1});
  EXPECT_EQ(cfg->eos_token_ids, std::vector<int32_t>{2});
  EXPECT_EQ(cfg->torch_dtype, "float32");

  auto set = SafetensorsSet::Open(dir);
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  EXPECT_EQ(set->tensors().size(), 47u);
  for (const auto& [name, t] : set->tensors()) {
    EXPECT_EQ(t.dtype, DType::kF32) << name;
    EXPECT_EQ(t.nbytes, static_cast<size_t>(t.numel()) * 4) << name;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data) % 4, 0u) << name;
    EXPECT_EQ(t.file, dir + "/model.safetensors");
  }
  EXPECT_EQ(ExpectedTensors(*cfg).size(), 47u);
  for (const auto& [name, shape] : ExpectedTensors(*cfg)) {
    EXPECT_TRUE(set->Require(name, shape).ok()) << name;
  }

  auto w = BindWeights(*set, *cfg);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_EQ(w->layers.size(), 5u);
  EXPECT_EQ(w->lm_head, w->embed);
  EXPECT_EQ(w->matmul_dtype, DType::kF32);
  EXPECT_EQ(w->layers[4].k_proj->shape, (std::vector<int64_t>{32, 64}));
  EXPECT_EQ(w->layers[0].down_proj->shape, (std::vector<int64_t>{64, 172}));
  EXPECT_EQ(w->layers[0].q_bias, nullptr);
  // RMSNorm weights of a trained model are finite and not all zero.
  const float* norm = static_cast<const float*>(w->final_norm->data);
  double sum = 0;
  for (int i = 0; i < 64; ++i) {
    ASSERT_TRUE(std::isfinite(norm[i]));
    sum += std::fabs(norm[i]);
  }
  EXPECT_GT(sum, 0.0);
}

// ---------------------------------------------------------------- safetensors write / read

struct OwnedTensor {
  TensorView view;
  std::vector<unsigned char> bytes;
};

OwnedTensor MakeTensor(const std::string& name, DType dtype, std::vector<int64_t> shape,
                       uint32_t seed) {
  OwnedTensor t;
  t.view.name = name;
  t.view.dtype = dtype;
  t.view.shape = std::move(shape);
  const int64_t n = t.view.numel();
  t.bytes.resize(static_cast<size_t>(n) * DTypeSize(dtype));
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist;
  for (int64_t i = 0; i < n; ++i) {
    const float v = dist(rng);
    if (dtype == DType::kF32) {
      std::memcpy(&t.bytes[i * 4], &v, 4);
    } else {
      const uint16_t h = dtype == DType::kF16 ? F32ToF16(v) : F32ToBf16(v);
      std::memcpy(&t.bytes[i * 2], &h, 2);
    }
  }
  t.view.nbytes = t.bytes.size();
  t.view.data = t.bytes.data();
  return t;
}

std::vector<TensorView> Views(const std::vector<OwnedTensor>& ts) {
  std::vector<TensorView> v;
  for (const OwnedTensor& t : ts) v.push_back(t.view);
  return v;
}

void ExpectSameTensor(const SafetensorsSet& set, const OwnedTensor& t) {
  const TensorView* got = set.Find(t.view.name);
  ASSERT_NE(got, nullptr) << t.view.name;
  EXPECT_EQ(got->dtype, t.view.dtype) << t.view.name;
  EXPECT_EQ(got->shape, t.view.shape) << t.view.name;
  ASSERT_EQ(got->nbytes, t.bytes.size()) << t.view.name;
  if (!t.bytes.empty()) {
    EXPECT_EQ(std::memcmp(got->data, t.bytes.data(), t.bytes.size()), 0) << t.view.name;
  }
  EXPECT_EQ(reinterpret_cast<uintptr_t>(got->data) % DTypeSize(got->dtype), 0u) << t.view.name;
}

TEST(Safetensors, WriteReadRoundTripAllDTypes) {
  const std::string dir = test::MakeTempDir("st-rt");
  std::vector<OwnedTensor> ts;
  ts.push_back(MakeTensor("a.f16", DType::kF16, {3}, 1));  // odd byte count before wider types
  ts.push_back(MakeTensor("b.bf16", DType::kBF16, {5, 3}, 2));
  ts.push_back(MakeTensor("c.f32", DType::kF32, {2, 3, 4}, 3));
  ts.push_back(MakeTensor("d.scalar", DType::kF32, {}, 4));
  ts.push_back(MakeTensor("e.empty", DType::kBF16, {0, 7}, 5));
  const std::string path = dir + "/model.safetensors";
  ASSERT_TRUE(WriteSafetensors(path, Views(ts), {{"format", "pt"}}).ok());
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));

  const std::string bytes = test::ReadFileOrDie(path);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i)
    header_len = (header_len << 8) | static_cast<unsigned char>(bytes[i]);
  EXPECT_EQ(header_len % 8, 0u);
  EXPECT_CONTAINS(bytes.substr(8, header_len), "\"__metadata__\":{\"format\":\"pt\"}");

  for (auto open : {SafetensorsSet::Open(dir), SafetensorsSet::OpenFile(path)}) {
    ASSERT_TRUE(open.ok()) << open.status().ToString();
    EXPECT_EQ(open->tensors().size(), ts.size());
    for (const OwnedTensor& t : ts) ExpectSameTensor(*open, t);
    EXPECT_EQ(open->dir(), dir);
  }
}

TEST(Safetensors, MisalignedTensorIsCopiedAligned) {
  // A hand-made file whose F32 tensor starts at byte 2 of the data buffer.
  const std::string dir = test::MakeTempDir("st-align");
  // The empty F32 tensor "z" at odd offset 1 needs no copy.
  const std::string header = R"({"h":{"dtype":"F16","shape":[1],"data_offsets":[0,2]},)"
                             R"("z":{"dtype":"F32","shape":[0],"data_offsets":[1,1]},)"
                             R"("f":{"dtype":"F32","shape":[2],"data_offsets":[2,10]}})";
  std::string header_padded = header + std::string((8 - header.size() % 8) % 8, ' ');
  std::string file = RawSafetensors(header_padded, 0);
  const uint16_t h = F32ToF16(1.5f);
  const float f[2] = {2.5f, -3.0f};
  file.append(reinterpret_cast<const char*>(&h), 2);
  file.append(reinterpret_cast<const char*>(f), 8);
  WriteBytes(dir + "/x.safetensors", file);
  auto set = SafetensorsSet::OpenFile(dir + "/x.safetensors");
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  const TensorView* t = set->Find("f");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t->data) % 4, 0u);
  EXPECT_EQ(static_cast<const float*>(t->data)[0], 2.5f);
  EXPECT_EQ(static_cast<const float*>(t->data)[1], -3.0f);
  EXPECT_EQ(F16ToF32(*static_cast<const uint16_t*>(set->Find("h")->data)), 1.5f);
}

TEST(Safetensors, Sharded) {
  const std::string dir = test::MakeTempDir("st-shard");
  std::vector<OwnedTensor> s1, s2;
  s1.push_back(MakeTensor("x.weight", DType::kBF16, {4, 4}, 1));
  s1.push_back(MakeTensor("y.weight", DType::kF32, {4}, 2));
  s2.push_back(MakeTensor("z.weight", DType::kF16, {2, 8}, 3));
  ASSERT_TRUE(WriteSafetensors(dir + "/model-00001-of-00002.safetensors", Views(s1)).ok());
  ASSERT_TRUE(WriteSafetensors(dir + "/model-00002-of-00002.safetensors", Views(s2)).ok());
  const std::string good_index = R"({"metadata":{"total_size":100},"weight_map":{
      "x.weight":"model-00001-of-00002.safetensors",
      "y.weight":"model-00001-of-00002.safetensors",
      "z.weight":"model-00002-of-00002.safetensors"}})";
  const std::string index_path = dir + "/model.safetensors.index.json";
  WriteBytes(index_path, good_index);
  auto set = SafetensorsSet::Open(dir);
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  EXPECT_EQ(set->tensors().size(), 3u);
  for (const auto* group : {&s1, &s2}) {
    for (const OwnedTensor& t : *group) ExpectSameTensor(*set, t);
  }
  EXPECT_EQ(set->Find("z.weight")->file, dir + "/model-00002-of-00002.safetensors");

  // The index is preferred over a stray single file.
  ASSERT_TRUE(WriteSafetensors(dir + "/model.safetensors", Views(s2)).ok());
  ASSERT_TRUE(SafetensorsSet::Open(dir).ok());

  // A tensor mapped to the wrong shard.
  WriteBytes(index_path, R"({"weight_map":{"x.weight":"model-00002-of-00002.safetensors",
      "z.weight":"model-00002-of-00002.safetensors"}})");
  std::string err = ErrorOf(SafetensorsSet::Open(dir));
  EXPECT_CONTAINS(err, "x.weight");
  EXPECT_CONTAINS(err, "model.safetensors.index.json");
  // A tensor the index names but no shard holds.
  WriteBytes(index_path, R"({"weight_map":{"w.weight":"model-00002-of-00002.safetensors"}})");
  EXPECT_CONTAINS(ErrorOf(SafetensorsSet::Open(dir)), "w.weight");
  // Paths escaping the directory.
  for (const char* shard : {"../model-00001-of-00002.safetensors", "sub/a.safetensors", ".."}) {
    WriteBytes(index_path, std::string(R"({"weight_map":{"x.weight":")") + shard + R"("}})");
    err = ErrorOf(SafetensorsSet::Open(dir));
    EXPECT_CONTAINS(err, "x.weight") << shard;
    EXPECT_CONTAINS(err, shard);
  }
  // A missing shard file.
  WriteBytes(index_path, R"({"weight_map":{"x.weight":"model-00009-of-00009.safetensors"}})");
  EXPECT_CONTAINS(ErrorOf(SafetensorsSet::Open(dir)), "model-00009-of-00009.safetensors");
  // The same tensor stored in two shards.
  ASSERT_TRUE(WriteSafetensors(dir + "/dup.safetensors", Views(s1)).ok());
  WriteBytes(index_path, R"({"weight_map":{"x.weight":"model-00001-of-00002.safetensors",
      "y.weight":"dup.safetensors"}})");
  err = ErrorOf(SafetensorsSet::Open(dir));
  EXPECT_CONTAINS(err, "dup.safetensors");
  EXPECT_CONTAINS(err, ".weight");
  // Malformed index.
  for (const char* text : {"{", R"({"weight_map":[]})", R"({"weight_map":{"x.weight":3}})", "[]"}) {
    WriteBytes(index_path, text);
    EXPECT_CONTAINS(ErrorOf(SafetensorsSet::Open(dir)), "model.safetensors.index.json") << text;
  }
}

TEST(Safetensors, OpenEmptyDirSaysWhatIsMissing) {
  const std::string dir = test::MakeTempDir("st-empty");
  auto r = SafetensorsSet::Open(dir);
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  const std::string err = ErrorOf(r);
  EXPECT_CONTAINS(err, "model.safetensors");
  EXPECT_CONTAINS(err, "model.safetensors.index.json");
  EXPECT_CONTAINS(err, dir);
}

TEST(Safetensors, RequireErrors) {
  auto set = SafetensorsSet::Open(test::BundledModelDir());
  ASSERT_TRUE(set.ok());
  EXPECT_CONTAINS(ErrorOf(set->Require("lm_head.weight", {512, 64})),
                  "tensor lm_head.weight missing (model dir " + test::BundledModelDir());
  EXPECT_CONTAINS(ErrorOf(set->Require("model.norm.weight", {64, 1})),
                  "tensor model.norm.weight in " + test::BundledModelDir() +
                      "/model.safetensors has shape [64], expected [64, 1]");
}

// ---------------------------------------------------------------- hostile safetensors

TEST(Safetensors, TruncatedFiles) {
  const std::string dir = test::MakeTempDir("st-trunc");
  for (size_t n : {0, 1, 7}) {
    const std::string path = dir + "/short" + std::to_string(n) + ".safetensors";
    WriteBytes(path, std::string(n, '\x01'));
    EXPECT_CONTAINS(ErrorOf(SafetensorsSet::OpenFile(path)), path);
  }
  // A valid file cut inside its data buffer: the last tensor runs past the end.
  std::vector<OwnedTensor> ts;
  ts.push_back(MakeTensor("big.weight", DType::kF32, {16, 16}, 1));
  const std::string full = dir + "/full.safetensors";
  ASSERT_TRUE(WriteSafetensors(full, Views(ts)).ok());
  std::string bytes = test::ReadFileOrDie(full);
  const std::string cut = dir + "/cut.safetensors";
  WriteBytes(cut, bytes.substr(0, bytes.size() - 5));
  std::string err = ErrorOf(SafetensorsSet::OpenFile(cut));
  EXPECT_CONTAINS(err, cut);
  EXPECT_CONTAINS(err, "big.weight");
  // Cut inside the header.
  WriteBytes(cut, bytes.substr(0, 20));
  EXPECT_CONTAINS(ErrorOf(SafetensorsSet::OpenFile(cut)), cut);
}

TEST(Safetensors, ResidentReadsTheSameBytesAndTheSameErrors) {
  const std::string dir = test::MakeTempDir("st-resident");
  std::vector<OwnedTensor> ts;
  ts.push_back(MakeTensor("a.weight", DType::kBF16, {64, 48}, 3));
  ts.push_back(MakeTensor("b.weight", DType::kF32, {7, 5}, 4));
  const std::string path = dir + "/model.safetensors";
  ASSERT_TRUE(WriteSafetensors(path, Views(ts)).ok());
  auto mapped = SafetensorsSet::OpenFile(path, MmapFile::Mode::kMap);
  auto resident = SafetensorsSet::OpenFile(path, MmapFile::Mode::kResident);
  ASSERT_TRUE(mapped.ok() && resident.ok());
  for (const auto& [name, t] : mapped->tensors()) {
    const TensorView* r = resident->Find(name);
    ASSERT_NE(r, nullptr) << name;
    ASSERT_EQ(r->nbytes, t.nbytes);
    EXPECT_NE(r->data, t.data);  // a copy, not the mapping
    EXPECT_EQ(std::memcmp(r->data, t.data, t.nbytes), 0) << name;
  }
  // A file cut inside its data fails the same way, naming the file.
  const std::string bytes = test::ReadFileOrDie(path);
  const std::string cut = dir + "/cut.safetensors";
  WriteBytes(cut, bytes.substr(0, bytes.size() - 5));
  const std::string err = ErrorOf(SafetensorsSet::OpenFile(cut, MmapFile::Mode::kResident));
  EXPECT_CONTAINS(err, cut);
  EXPECT_CONTAINS(err, "beyond the data buffer");
  EXPECT_CONTAINS(ErrorOf(MmapFile::Open(dir + "/nope", MmapFile::Mode::kResident)), "nope");
}

TEST(Safetensors, AbsurdHeaderLength) {
  const std::string dir = test::MakeTempDir("st-len");
  for (uint64_t n : {uint64_t{1000}, uint64_t{1} << 40, ~uint64_t{0}}) {
    std::string file(8, '\0');
    for (int i = 0; i < 8; ++i) file[i] = static_cast<char>(n >> (8 * i));
    file += "{}";
    const std::string path = dir + "/len.safetensors";
    WriteBytes(path, file);
    EXPECT_CONTAINS(ErrorOf(SafetensorsSet::OpenFile(path)), path) << n;
  }
}

TEST(Safetensors, MalformedHeaders) {
  struct Case {
    const char* header;
    size_t data_bytes;
    const char* must_mention;  // tensor or field
  };
  const Case cases[] = {
      {"{not json", 0, "JSON"},
      {"[1,2,3]", 0, "object"},
      {"\"str\"", 0, "object"},
      {R"({"t":{"dtype":"F32","shape":[1]}})", 4, "t"},
      {R"({"t":{"shape":[1],"data_offsets":[0,4]}})", 4, "t"},
      {R"({"t":5})", 4, "t"},
      {R"({"t":{"dtype":7,"shape":[1],"data_offsets":[0,4]}})", 4, "t"},
      {R"({"t":{"dtype":"F32","shape":"1","data_offsets":[0,4]}})", 4, "t"},
      {R"({"t":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", 4, "t"},
      {R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", 4, "t"},
      {R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,"4"]}})", 4, "t"},
      {R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", 4, "t"},
      {R"({"int8_t":{"dtype":"I8","shape":[4],"data_offsets":[0,4]}})", 4, "I8"},
      {R"({"neg_t":{"dtype":"F32","shape":[-1,4],"data_offsets":[0,4]}})", 4, "neg_t"},
      {R"({"ovf_t":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})", 4,
       "ovf_t"},
      {R"({"ovf2_t":{"dtype":"F32","shape":[4611686018427387904,2],"data_offsets":[0,4]}})", 4,
       "ovf2_t"},
      {R"({"ovf3_t":{"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,4]}})", 4,
       "ovf3_t"},
      {R"({"rev_t":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}})", 4, "rev_t"},
      {R"({"far_t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4, "far_t"},
      {R"({"far2_t":{"dtype":"F32","shape":[1],"data_offsets":[18446744073709551612,18446744073709551615]}})",
       4, "far2_t"},
      {R"({"size_t":{"dtype":"F16","shape":[3],"data_offsets":[0,8]}})", 8, "size_t"},
      {R"({"a_t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
       R"("b_t":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
       12, "b_t"},
      {R"({"dup_t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
       R"("dup_t":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
       8, "dup_t"},
      {R"({"__metadata__":[1],"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4,
       "__metadata__"},
  };
  for (const Case& c : cases) {
    std::string path;
    const std::string err = OpenRawError(c.header, c.data_bytes, &path);
    EXPECT_CONTAINS(err, path) << c.header;
    EXPECT_CONTAINS(err, c.must_mention) << c.header;
  }
  // The unknown-dtype error names the tensor as well as the dtype.
  std::string path;
  EXPECT_CONTAINS(
      OpenRawError(R"({"int8_t":{"dtype":"I8","shape":[4],"data_offsets":[0,4]}})", 4, &path),
      "int8_t");
  // Overlap is reported whichever tensor sorts first by name.
  const std::string overlap =
      OpenRawError(R"({"z_t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                   R"("a_t":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                   8, &path);
  EXPECT_CONTAINS(overlap, "overlap");
  EXPECT_CONTAINS(overlap, "a_t");
  // Zero-sized tensors inside another's range, empty headers and trailing spaces are fine.
  for (const char* ok_header : {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                R"("e":{"dtype":"BF16","shape":[0],"data_offsets":[4,4]}}   )",
                                "{}", R"({"__metadata__":{"format":"pt"}})"}) {
    const std::string dir = test::MakeTempDir("st-ok");
    WriteBytes(dir + "/ok.safetensors", RawSafetensors(ok_header, 8));
    auto r = SafetensorsSet::OpenFile(dir + "/ok.safetensors");
    EXPECT_TRUE(r.ok()) << ok_header << " " << r.status().ToString();
  }
}

// The JSON parser and destructor are iterative, so a hostile nesting depth is just an error.
TEST(Safetensors, DeeplyNestedHeader) {
  const int depth = 200000;
  std::string path;
  const std::string err = OpenRawError(
      "{\"deep_t\":" + std::string(depth, '[') + std::string(depth, ']') + "}", 0, &path);
  EXPECT_CONTAINS(err, path);
  EXPECT_CONTAINS(err, "deep_t");
}

// Every prefix and many random corruptions of a valid file must fail cleanly or load.
TEST(Safetensors, FuzzedFilesNeverCrash) {
  const std::string dir = test::MakeTempDir("st-fuzz");
  std::vector<OwnedTensor> ts;
  ts.push_back(MakeTensor("model.a", DType::kF32, {3, 5}, 1));
  ts.push_back(MakeTensor("model.b", DType::kBF16, {7}, 2));
  const std::string path = dir + "/f.safetensors";
  ASSERT_TRUE(WriteSafetensors(path, Views(ts)).ok());
  const std::string good = test::ReadFileOrDie(path);
  for (size_t n = 0; n < good.size(); ++n) {
    WriteBytes(path, good.substr(0, n));
    auto r = SafetensorsSet::OpenFile(path);
    if (!r.ok()) {
      EXPECT_CONTAINS(r.status().message(), path);
    }
  }
  std::mt19937 rng(11);
  for (int i = 0; i < 3000; ++i) {
    std::string bad = good;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) bad[rng() % bad.size()] = static_cast<char>(rng());
    WriteBytes(path, bad);
    auto r = SafetensorsSet::OpenFile(path);
    if (!r.ok()) {
      EXPECT_CONTAINS(r.status().message(), path);
    }
  }
}

// ---------------------------------------------------------------- writer errors

TEST(Safetensors, WriteErrors) {
  const std::string dir = test::MakeTempDir("st-werr");
  std::vector<OwnedTensor> ts;
  ts.push_back(MakeTensor("t", DType::kF32, {4}, 1));
  const std::string nodir = dir + "/no/such/dir/x.safetensors";
  Status st = WriteSafetensors(nodir, Views(ts));
  EXPECT_EQ(st.code(), StatusCode::kIOError);
  EXPECT_CONTAINS(st.message(), nodir);

  std::vector<TensorView> bad = Views(ts);
  bad[0].nbytes = 3;
  st = WriteSafetensors(dir + "/a.safetensors", bad);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_CONTAINS(st.message(), "'t'");
  bad = Views(ts);
  bad.push_back(bad[0]);
  EXPECT_CONTAINS(WriteSafetensors(dir + "/a.safetensors", bad).message(), "twice");
  bad = Views(ts);
  bad[0].name = "__metadata__";
  EXPECT_FALSE(WriteSafetensors(dir + "/a.safetensors", bad).ok());
  bad = Views(ts);
  bad[0].name = "bad\xff";
  EXPECT_FALSE(WriteSafetensors(dir + "/a.safetensors", bad).ok());
  EXPECT_FALSE(std::filesystem::exists(dir + "/a.safetensors"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/a.safetensors.tmp"));
}

// A write that fails part-way (here: the file-size limit, standing in for ENOSPC) reports the
// path and leaves neither the target nor the temporary file behind.
TEST(Safetensors, FailedWriteRemovesTemporary) {
  const std::string dir = test::MakeTempDir("st-full");
  std::vector<OwnedTensor> ts;
  ts.push_back(MakeTensor("big", DType::kF32, {64, 1024}, 1));
  struct rlimit old;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  struct rlimit small = old;
  small.rlim_cur = 64 * 1024;
  auto old_handler = signal(SIGXFSZ, SIG_IGN);
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  const std::string path = dir + "/full.safetensors";
  Status st = WriteSafetensors(path, Views(ts));
  setrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, old_handler);
  ASSERT_FALSE(st.ok());
  EXPECT_CONTAINS(st.message(), path);
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

// ---------------------------------------------------------------- weight binding

ModelConfig TinyConfig(bool tie, bool bias) {
  ModelConfig c;
  c.arch = ModelArch::kLlama;
  c.model_type = "llama";
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 4;
  c.vocab_size = 32;
  c.max_position_embeddings = 64;
  c.tie_word_embeddings = tie;
  c.attention_bias = bias;
  return c;
}

// Writes a random model for `cfg`; `dtype_of(name)` picks each tensor's dtype.
template <typename F>
void WriteModel(const std::string& dir, const ModelConfig& cfg, F dtype_of,
                const std::vector<std::string>& skip = {},
                const std::vector<std::pair<std::string, std::vector<int64_t>>>& extra = {}) {
  std::vector<OwnedTensor> ts;
  uint32_t seed = 1;
  auto expected = ExpectedTensors(cfg);
  expected.insert(expected.end(), extra.begin(), extra.end());
  for (const auto& [name, shape] : expected) {
    if (std::find(skip.begin(), skip.end(), name) != skip.end()) continue;
    ts.push_back(MakeTensor(name, dtype_of(name), shape, seed++));
  }
  ASSERT_TRUE(WriteSafetensors(dir + "/model.safetensors", Views(ts)).ok());
  std::ofstream(dir + "/config.json") << cfg.ToJsonText();
}

TEST(BindWeights, UntiedWithBiasAndMixedNormDtype) {
  const std::string dir = test::MakeTempDir("bind");
  const ModelConfig cfg = TinyConfig(/*tie=*/false, /*bias=*/true);
  WriteModel(dir, cfg, [](const std::string& name) {
    // Norms and biases may differ from the matmul dtype.
    if (name.find("norm") != std::string::npos) return DType::kF32;
    if (name.find("bias") != std::string::npos) return DType::kF16;
    return DType::kBF16;
  });
  auto set = SafetensorsSet::Open(dir);
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  auto back_cfg = ModelConfig::FromFile(dir + "/config.json");
  ASSERT_TRUE(back_cfg.ok()) << back_cfg.status().ToString();
  auto w = BindWeights(*set, *back_cfg);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_EQ(w->matmul_dtype, DType::kBF16);
  EXPECT_NE(w->lm_head, w->embed);
  EXPECT_EQ(w->lm_head->name, "lm_head.weight");
  ASSERT_EQ(w->layers.size(), 2u);
  EXPECT_EQ(w->layers[1].q_proj->name, "model.layers.1.self_attn.q_proj.weight");
  EXPECT_EQ(w->layers[1].v_bias->shape, (std::vector<int64_t>{8}));
  EXPECT_EQ(w->layers[1].o_proj->shape, (std::vector<int64_t>{16, 16}));
  EXPECT_EQ(w->layers[0].post_norm->name, "model.layers.0.post_attention_layernorm.weight");
  EXPECT_EQ(w->layers[0].gate_proj->shape, (std::vector<int64_t>{24, 16}));
}

TEST(BindWeights, TiedIgnoresStrayLmHead) {
  const std::string dir = test::MakeTempDir("bind-tied");
  const ModelConfig cfg = TinyConfig(/*tie=*/true, /*bias=*/false);
  WriteModel(dir, cfg, [](const std::string&) { return DType::kF16; }, {},
             {{"lm_head.weight", {32, 16}}});
  auto set = SafetensorsSet::Open(dir);
  ASSERT_TRUE(set.ok());
  auto w = BindWeights(*set, cfg);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_EQ(w->lm_head, w->embed);
  EXPECT_EQ(w->layers[0].q_bias, nullptr);
}

TEST(BindWeights, Errors) {
  const ModelConfig cfg = TinyConfig(/*tie=*/false, /*bias=*/true);
  {
    const std::string dir = test::MakeTempDir("bind-missing");
    WriteModel(dir, cfg, [](const std::string&) { return DType::kF32; },
               {"model.layers.1.self_attn.k_proj.bias"});
    auto set = SafetensorsSet::Open(dir);
    ASSERT_TRUE(set.ok());
    const std::string err = ErrorOf(BindWeights(*set, cfg));
    EXPECT_CONTAINS(err, "tensor model.layers.1.self_attn.k_proj.bias missing");
    EXPECT_CONTAINS(err, dir);
  }
  {
    const std::string dir = test::MakeTempDir("bind-mixed");
    WriteModel(dir, cfg, [](const std::string& name) {
      return name == "model.layers.0.mlp.up_proj.weight" ? DType::kF16 : DType::kF32;
    });
    auto set = SafetensorsSet::Open(dir);
    ASSERT_TRUE(set.ok());
    const std::string err = ErrorOf(BindWeights(*set, cfg));
    EXPECT_CONTAINS(err, "model.layers.0.mlp.up_proj.weight");
    EXPECT_CONTAINS(err, "F16");
  }
  {
    // Shapes for another config (more kv heads) do not bind.
    const std::string dir = test::MakeTempDir("bind-shape");
    ModelConfig other = cfg;
    other.num_kv_heads = 4;
    WriteModel(dir, other, [](const std::string&) { return DType::kF32; });
    auto set = SafetensorsSet::Open(dir);
    ASSERT_TRUE(set.ok());
    const std::string err = ErrorOf(BindWeights(*set, cfg));
    EXPECT_CONTAINS(err, "tensor model.layers.0.self_attn.k_proj.weight in " + dir +
                             "/model.safetensors has shape [16, 16], expected [8, 16]");
  }
  {
    // Untied config over a checkpoint without lm_head.
    auto set = SafetensorsSet::Open(test::BundledModelDir());
    ASSERT_TRUE(set.ok());
    auto c = ModelConfig::FromFile(test::BundledModelDir() + "/config.json");
    ASSERT_TRUE(c.ok());
    c->tie_word_embeddings = false;
    EXPECT_CONTAINS(ErrorOf(BindWeights(*set, *c)), "lm_head.weight missing");
  }
}

}  // namespace
}  // namespace ckv
