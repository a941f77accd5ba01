#include "ckv/generate.h"

#include <algorithm>

#include "common/clock.h"

namespace ckv {

Result<std::string> DecodeContinuation(const Tokenizer& tok, std::span<const int32_t> prompt,
                                       std::span<const int32_t> generated) {
  std::vector<int32_t> all(prompt.begin(), prompt.end());
  all.insert(all.end(), generated.begin(), generated.end());
  CKV_ASSIGN_OR_RETURN(std::string full, tok.Decode(all, true));
  CKV_ASSIGN_OR_RETURN(std::string head, tok.Decode(prompt, true));
  if (full.compare(0, head.size(), head) == 0) return full.substr(head.size());
  return tok.Decode(generated, true);
}

Result<GenerateResult> Generate(const Model& model, std::span<const int32_t> prompt_ids,
                                const GenerateOptions& opts, const TokenCallback& on_token) {
  CKV_RETURN_IF_ERROR(ValidateSampling(opts.sampling));
  if (opts.max_tokens < 0) return Status::InvalidArgument("max_tokens must be >= 0");
  if (prompt_ids.empty()) {
    return Status::InvalidArgument("empty prompt: the model needs at least one token");
  }
  const ModelConfig& cfg = model.config();
  const int64_t total = static_cast<int64_t>(prompt_ids.size()) + opts.max_tokens;
  const int64_t capacity = std::min<int64_t>(total, cfg.max_position_embeddings);
  if (static_cast<int64_t>(prompt_ids.size()) > cfg.max_position_embeddings) {
    return Status::OutOfRange("prompt of " + std::to_string(prompt_ids.size()) +
                              " tokens is longer than the model's context of " +
                              std::to_string(cfg.max_position_embeddings) + " tokens");
  }
  KVCache kv = model.NewCache(opts.kv_precision, capacity);
  GenerateResult res;
  res.prompt_ids.assign(prompt_ids.begin(), prompt_ids.end());
  Sampler sampler(opts.sampling);
  std::vector<float> logits;
  auto t0 = SteadyClock::now();
  CKV_RETURN_IF_ERROR(model.Forward(prompt_ids, kv, &logits));
  res.prefill_ms = MsSince(t0);
  t0 = SteadyClock::now();
  for (int step = 0; step < opts.max_tokens; ++step) {
    const int32_t next = sampler.Sample(logits);
    const bool is_eos = std::find(cfg.eos_token_ids.begin(), cfg.eos_token_ids.end(), next) !=
                        cfg.eos_token_ids.end();
    if (opts.stop_at_eos && is_eos) {
      res.stopped_at_eos = true;
      break;
    }
    res.generated_ids.push_back(next);
    if (on_token && !on_token(next)) break;
    if (step + 1 == opts.max_tokens || kv.size() >= kv.capacity()) break;
    const int32_t one[1] = {next};
    CKV_RETURN_IF_ERROR(model.Forward(one, kv, &logits));
  }
  res.decode_ms = MsSince(t0);
  if (model.tokenizer() != nullptr) {
    CKV_ASSIGN_OR_RETURN(res.text,
                         DecodeContinuation(*model.tokenizer(), res.prompt_ids, res.generated_ids));
  }
  return res;
}

}  // namespace ckv
