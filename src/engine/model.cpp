#include "ckv/model.h"

#include <filesystem>

#include "engine/transformer.h"

namespace ckv {

Model::~Model() = default;

Result<std::unique_ptr<Model>> Model::Load(const std::string& dir, const ModelOptions& opts) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(dir)) return Status::NotFound("model directory " + dir + " does not exist");
  std::unique_ptr<Model> m(new Model());
  m->dir_ = dir;
  CKV_ASSIGN_OR_RETURN(m->config_, ModelConfig::FromFile(dir + "/config.json"));
  const bool has_tokenizer =
      fs::exists(dir + "/tokenizer.json") || fs::exists(dir + "/tokenizer.json.gz");
  if (has_tokenizer || opts.require_tokenizer) {
    CKV_ASSIGN_OR_RETURN(m->tokenizer_, Tokenizer::FromDirectory(dir));
    if (m->tokenizer_->vocab_size() > m->config_.vocab_size) {
      return Status::InvalidArgument(
          dir + ": tokenizer has " + std::to_string(m->tokenizer_->vocab_size()) +
          " tokens but config.json vocab_size is " + std::to_string(m->config_.vocab_size));
    }
  }
  CKV_ASSIGN_OR_RETURN(SafetensorsSet tensors,
                       SafetensorsSet::Open(dir, opts.resident_weights ? MmapFile::Mode::kResident
                                                                       : MmapFile::Mode::kMap));
  TransformerOptions to;
  to.pack_weights = opts.pack_weights;
  auto t = Transformer::Create(std::move(tensors), m->config_, to);
  if (!t.ok()) return t.status().WithContext("loading model " + dir);
  m->transformer_ = std::move(t).value();
  m->packed_weights_ = opts.pack_weights;
  return m;
}

uint64_t Model::fingerprint() const {
  return transformer_->fingerprint();
}

const char* Model::weight_dtype_name() const {
  return DTypeName(transformer_->weight_dtype());
}

KVCache Model::NewCache(KVPrecision precision, int64_t capacity) const {
  if (capacity <= 0) capacity = config_.max_position_embeddings;
  return KVCache(config_, precision, capacity);
}

KVPrecision Model::DefaultKVPrecision() const {
  return transformer_->weight_dtype() == DType::kF32 ? KVPrecision::kF32 : KVPrecision::kBF16;
}

Status Model::Forward(std::span<const int32_t> tokens, KVCache& kv, std::vector<float>* logits,
                      bool all_logits) const {
  const int n = static_cast<int>(tokens.size());
  if (n == 0) return Status::InvalidArgument("empty input: no tokens to run");
  for (int32_t id : tokens) {
    if (id < 0 || id >= config_.vocab_size) {
      return Status::OutOfRange("token id " + std::to_string(id) +
                                " is outside the vocabulary [0, " +
                                std::to_string(config_.vocab_size) + ")");
    }
  }
  const int64_t start = kv.size();
  const int64_t limit = std::min<int64_t>(kv.capacity(), config_.max_position_embeddings);
  if (start + n > limit) {
    return Status::OutOfRange("sequence of " + std::to_string(start + n) +
                              " tokens exceeds the context of " + std::to_string(limit) +
                              " tokens (max_position_embeddings / cache capacity)");
  }
  const int hidden = config_.hidden_size;
  const DType kv_dtype = kv.precision() == KVPrecision::kBF16 ? DType::kBF16 : DType::kF32;
  const size_t row_bytes = static_cast<size_t>(kv.kv_dim()) * kv.elem_bytes();
  std::vector<int32_t> positions(n);
  for (int i = 0; i < n; ++i) positions[i] = static_cast<int32_t>(start + i);
  std::vector<float> x(static_cast<size_t>(n) * hidden);
  transformer_->Embed(tokens, x.data());
  Scratch scratch;
  for (int l = 0; l < config_.num_layers; ++l) {
    auto* kb = static_cast<unsigned char*>(kv.k(l));
    auto* vb = static_cast<unsigned char*>(kv.v(l));
    Transformer::NewKV out{kb + start * row_bytes, vb + start * row_bytes};
    const KVSpan all{kb, vb, start + n, 0};
    transformer_->Layer(l, x.data(), n, positions.data(), out, kv_dtype, {&all, 1}, scratch);
  }
  kv.Advance(n);
  if (logits != nullptr) {
    std::vector<int> rows;
    if (all_logits) {
      for (int i = 0; i < n; ++i) rows.push_back(i);
    } else {
      rows.push_back(n - 1);
    }
    logits->resize(rows.size() * static_cast<size_t>(config_.vocab_size));
    transformer_->Logits(x.data(), rows, logits->data());
  }
  return Status::OK();
}

}  // namespace ckv
