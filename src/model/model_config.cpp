#include "ckv/model_config.h"

#include <charconv>
#include <climits>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace ckv {
namespace {

using nlohmann::json;

// Field accessors: every error names the file and the field, so a user can fix config.json
// without reading our source.
class ConfigReader {
 public:
  ConfigReader(const json& j, const std::string& path) : j_(j), path_(path) {}

  Status Error(const std::string& field, const std::string& what) const {
    return Status::InvalidArgument(path_ + ": field '" + field + "' " + what);
  }
  Status Unsupported(const std::string& field, const std::string& what) const {
    return Status::Unsupported(path_ + ": field '" + field + "' " + what);
  }

  // Absent and null are treated alike: HF writes null for "use the default".
  const json* Get(const std::string& field) const {
    auto it = j_.find(field);
    if (it == j_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  Status Int(const std::string& field, bool required, int* out) const {
    const json* v = Get(field);
    if (v == nullptr) return required ? Error(field, "is required but missing") : Status::OK();
    if (!v->is_number_integer()) return Error(field, "must be an integer, got " + v->dump());
    if (v->is_number_unsigned() ? v->get<uint64_t>() > INT_MAX
                                : (v->get<int64_t>() > INT_MAX || v->get<int64_t>() < INT_MIN)) {
      return Error(field, "is out of range: " + v->dump());
    }
    *out = v->get<int>();
    return Status::OK();
  }

  Status Float(const std::string& field, float* out) const {
    const json* v = Get(field);
    if (v == nullptr) return Status::OK();
    if (!v->is_number()) return Error(field, "must be a number, got " + v->dump());
    *out = static_cast<float>(v->get<double>());
    return Status::OK();
  }

  Status Bool(const std::string& field, bool* out) const {
    const json* v = Get(field);
    if (v == nullptr) return Status::OK();
    if (!v->is_boolean()) return Error(field, "must be true or false, got " + v->dump());
    *out = v->get<bool>();
    return Status::OK();
  }

  Status String(const std::string& field, std::string* out) const {
    const json* v = Get(field);
    if (v == nullptr) return Status::OK();
    if (!v->is_string()) return Error(field, "must be a string, got " + v->dump());
    *out = v->get<std::string>();
    return Status::OK();
  }

  // bos/eos: an id, a list of ids, or null.
  Status TokenIds(const std::string& field, std::vector<int32_t>* out) const {
    out->clear();
    const json* v = Get(field);
    if (v == nullptr) return Status::OK();
    auto one = [&](const json& e) -> Status {
      if (!e.is_number_integer() || e.get<int64_t>() < 0 || e.get<int64_t>() > INT32_MAX) {
        return Error(field, "must be a non-negative token id or a list of them, got " + v->dump());
      }
      out->push_back(static_cast<int32_t>(e.get<int64_t>()));
      return Status::OK();
    };
    if (v->is_array()) {
      for (const json& e : *v) CKV_RETURN_IF_ERROR(one(e));
      return Status::OK();
    }
    return one(*v);
  }

 private:
  const json& j_;
  const std::string& path_;
};

Status CheckUnsupported(const ConfigReader& r, ModelArch arch) {
  if (const json* rs = r.Get("rope_scaling")) {
    std::string type;
    if (rs->is_object()) {
      for (const char* key : {"rope_type", "type"}) {
        auto it = rs->find(key);
        if (it != rs->end() && it->is_string()) type = it->get<std::string>();
        if (!type.empty()) break;
      }
    }
    if (!rs->is_object() || (!type.empty() && type != "default")) {
      return r.Unsupported("rope_scaling",
                           "is not supported (only null or type \"default\"), got " + rs->dump());
    }
  }
  std::string act = "silu";
  CKV_RETURN_IF_ERROR(r.String("hidden_act", &act));
  if (act != "silu") return r.Unsupported("hidden_act", "must be \"silu\", got \"" + act + "\"");
  bool mlp_bias = false;
  CKV_RETURN_IF_ERROR(r.Bool("mlp_bias", &mlp_bias));
  if (mlp_bias) return r.Unsupported("mlp_bias", "true is not supported");
  if (arch == ModelArch::kQwen2) {
    bool sliding = false;
    CKV_RETURN_IF_ERROR(r.Bool("use_sliding_window", &sliding));
    if (sliding) return r.Unsupported("use_sliding_window", "true is not supported");
  }
  return Status::OK();
}

Status CheckShapes(const ConfigReader& r, const ModelConfig& c, bool head_dim_given) {
  const std::pair<const char*, int> sizes[] = {
      {"hidden_size", c.hidden_size},
      {"intermediate_size", c.intermediate_size},
      {"num_hidden_layers", c.num_layers},
      {"num_attention_heads", c.num_heads},
      {"num_key_value_heads", c.num_kv_heads},
      {"head_dim", c.head_dim},
      {"vocab_size", c.vocab_size},
      {"max_position_embeddings", c.max_position_embeddings},
  };
  for (const auto& [name, v] : sizes) {
    if (v <= 0) return r.Error(name, "must be positive, got " + std::to_string(v));
  }
  if (c.num_heads % c.num_kv_heads != 0) {
    return r.Error("num_key_value_heads", "(" + std::to_string(c.num_kv_heads) +
                                              ") must divide num_attention_heads (" +
                                              std::to_string(c.num_heads) + ")");
  }
  if (!head_dim_given && c.hidden_size % c.num_heads != 0) {
    return r.Error("num_attention_heads",
                   "(" + std::to_string(c.num_heads) + ") must divide hidden_size (" +
                       std::to_string(c.hidden_size) + ") when head_dim is not given");
  }
  // rotate_half RoPE pairs element i with i + head_dim/2.
  if (c.head_dim % 2 != 0) {
    return r.Error("head_dim", "must be even for RoPE, got " + std::to_string(c.head_dim));
  }
  // Products feed int arithmetic (q_dim, kv bytes): keep them well inside int range.
  if (int64_t{c.num_heads} * c.head_dim > INT_MAX / 4) {
    return r.Error("head_dim", "times num_attention_heads is too large");
  }
  if (!(c.rms_norm_eps > 0.0f)) return r.Error("rms_norm_eps", "must be positive");
  if (!(c.rope_theta > 0.0f)) return r.Error("rope_theta", "must be positive");
  return Status::OK();
}

// Shortest decimal that reads back as the same float, so 1e-5f is written "1e-05" and not
// "9.999999747378752e-06".
double ShortestDouble(float f) {
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), f);
  double d = f;
  std::from_chars(buf, res.ptr, d);
  return d;
}

json TokenIdsJson(const std::vector<int32_t>& ids) {
  if (ids.empty()) return nullptr;
  if (ids.size() == 1) return ids[0];
  return ids;
}

}  // namespace

Result<ModelConfig> ModelConfig::FromJsonText(const std::string& text,
                                              const std::string& path_for_errors) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    return Status::InvalidArgument(path_for_errors + ": not valid JSON: " + e.what());
  }
  if (!j.is_object()) return Status::InvalidArgument(path_for_errors + ": not a JSON object");
  ConfigReader r(j, path_for_errors);

  ModelConfig c;
  CKV_RETURN_IF_ERROR(r.String("model_type", &c.model_type));
  if (c.model_type == "llama") {
    c.arch = ModelArch::kLlama;
  } else if (c.model_type == "qwen2") {
    c.arch = ModelArch::kQwen2;
  } else if (c.model_type.empty()) {
    return r.Error("model_type", "is required but missing");
  } else {
    return r.Unsupported("model_type",
                         "\"" + c.model_type + "\" is not supported (expected llama or qwen2)");
  }
  CKV_RETURN_IF_ERROR(CheckUnsupported(r, c.arch));

  CKV_RETURN_IF_ERROR(r.Int("hidden_size", true, &c.hidden_size));
  CKV_RETURN_IF_ERROR(r.Int("intermediate_size", true, &c.intermediate_size));
  CKV_RETURN_IF_ERROR(r.Int("num_hidden_layers", true, &c.num_layers));
  CKV_RETURN_IF_ERROR(r.Int("num_attention_heads", true, &c.num_heads));
  CKV_RETURN_IF_ERROR(r.Int("vocab_size", true, &c.vocab_size));
  c.num_kv_heads = c.num_heads;
  CKV_RETURN_IF_ERROR(r.Int("num_key_value_heads", false, &c.num_kv_heads));
  const bool head_dim_given = r.Get("head_dim") != nullptr;
  c.head_dim = c.num_heads > 0 ? c.hidden_size / c.num_heads : 0;
  CKV_RETURN_IF_ERROR(r.Int("head_dim", false, &c.head_dim));
  c.max_position_embeddings = c.arch == ModelArch::kQwen2 ? 32768 : 2048;
  CKV_RETURN_IF_ERROR(r.Int("max_position_embeddings", false, &c.max_position_embeddings));
  c.rms_norm_eps = 1e-6f;
  CKV_RETURN_IF_ERROR(r.Float("rms_norm_eps", &c.rms_norm_eps));
  c.rope_theta = 10000.0f;
  CKV_RETURN_IF_ERROR(r.Float("rope_theta", &c.rope_theta));
  c.tie_word_embeddings = false;
  CKV_RETURN_IF_ERROR(r.Bool("tie_word_embeddings", &c.tie_word_embeddings));
  if (c.arch == ModelArch::kQwen2) {
    c.attention_bias = true;  // Qwen2 always has q/k/v biases, whatever the config says
  } else {
    c.attention_bias = false;
    CKV_RETURN_IF_ERROR(r.Bool("attention_bias", &c.attention_bias));
  }
  CKV_RETURN_IF_ERROR(r.TokenIds("bos_token_id", &c.bos_token_ids));
  CKV_RETURN_IF_ERROR(r.TokenIds("eos_token_id", &c.eos_token_ids));
  CKV_RETURN_IF_ERROR(r.String("torch_dtype", &c.torch_dtype));
  CKV_RETURN_IF_ERROR(CheckShapes(r, c, head_dim_given));
  return c;
}

Result<ModelConfig> ModelConfig::FromFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("cannot open model config " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return Status::IOError("cannot read model config " + path);
  return FromJsonText(ss.str(), path);
}

std::string ModelConfig::ToJsonText() const {
  const bool qwen2 = arch == ModelArch::kQwen2;
  nlohmann::ordered_json j;
  j["architectures"] = {qwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM"};
  j["model_type"] = qwen2 ? "qwen2" : "llama";
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["num_hidden_layers"] = num_layers;
  j["num_attention_heads"] = num_heads;
  j["num_key_value_heads"] = num_kv_heads;
  j["head_dim"] = head_dim;
  j["vocab_size"] = vocab_size;
  j["max_position_embeddings"] = max_position_embeddings;
  j["rms_norm_eps"] = ShortestDouble(rms_norm_eps);
  j["rope_theta"] = ShortestDouble(rope_theta);
  j["rope_scaling"] = nullptr;
  j["hidden_act"] = "silu";
  j["tie_word_embeddings"] = tie_word_embeddings;
  if (qwen2) {
    j["use_sliding_window"] = false;
  } else {
    j["attention_bias"] = attention_bias;
    j["mlp_bias"] = false;
  }
  j["bos_token_id"] = TokenIdsJson(bos_token_ids);
  j["eos_token_id"] = TokenIdsJson(eos_token_ids);
  if (!torch_dtype.empty()) j["torch_dtype"] = torch_dtype;
  return j.dump(2) + "\n";
}

}  // namespace ckv
