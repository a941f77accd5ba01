#include <algorithm>
#include <random>
#include <span>

#include "ckv/generate.h"
#include "ckv/perplexity.h"
#include "eval/nll.h"

namespace ckv {
namespace {

// Uniform in [0, n) from raw 64-bit draws: std::uniform_int_distribution is
// implementation-defined, and the probe must pick the same spans with every standard library.
uint64_t UniformBelow(std::mt19937_64& rng, uint64_t n) {
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x;
  do {
    x = rng();
  } while (x >= limit);
  return x % n;
}

}  // namespace

Result<std::vector<InductionRow>> InductionProbe(const Model& model, const std::string& filler_text,
                                                 const InductionOptions& opts) {
  const Tokenizer* tok = model.tokenizer();
  if (tok == nullptr) return Status::InvalidArgument("model has no tokenizer");
  const auto bos = tok->bos_id();
  if (!bos) return Status::InvalidArgument("induction: the tokenizer has no BOS token");
  if (opts.span_tokens < 2 || opts.trials < 1 || opts.gaps.empty() || opts.forward_tokens < 1) {
    return Status::InvalidArgument("induction: needs a span of >= 2 tokens, >= 1 trial and a gap");
  }
  const int vocab = model.config().vocab_size;
  std::vector<int32_t> regular;  // the span draws from tokens text can contain
  for (int32_t id = 0; id < vocab; ++id) {
    if (!tok->IsSpecial(id)) regular.push_back(id);
  }
  if (regular.empty()) return Status::InvalidArgument("induction: every token is special");
  CKV_ASSIGN_OR_RETURN(std::vector<int32_t> filler, tok->Encode(filler_text, false));
  if (filler.empty()) return Status::InvalidArgument("induction: the filler text has no tokens");
  const int64_t max_len = model.config().max_position_embeddings;

  std::mt19937_64 rng(opts.seed);
  std::vector<InductionRow> rows;
  for (int64_t gap : opts.gaps) {
    const int64_t len = 1 + 2 * opts.span_tokens + gap;
    if (gap < 0 || len > max_len) {
      return Status::InvalidArgument("induction: gap " + std::to_string(gap) + " with span " +
                                     std::to_string(opts.span_tokens) + " needs " +
                                     std::to_string(len) + " positions; the model has " +
                                     std::to_string(max_len));
    }
    InductionRow row;
    row.gap = gap;
    row.trials = opts.trials;
    int64_t scored = 0;
    for (int t = 0; t < opts.trials; ++t) {
      std::vector<int32_t> seq;
      seq.reserve(len);
      seq.push_back(*bos);
      std::vector<int32_t> span(opts.span_tokens);
      if (opts.text_spans) {
        // A span of the text itself, from anywhere in it (cycled like the filler).
        const uint64_t at = UniformBelow(rng, filler.size());
        for (int64_t i = 0; i < opts.span_tokens; ++i) span[i] = filler[(at + i) % filler.size()];
      } else {
        for (auto& id : span) id = regular[UniformBelow(rng, regular.size())];
      }
      seq.insert(seq.end(), span.begin(), span.end());
      const uint64_t offset = UniformBelow(rng, filler.size());
      for (int64_t i = 0; i < gap; ++i) seq.push_back(filler[(offset + i) % filler.size()]);
      seq.insert(seq.end(), span.begin(), span.end());

      // Span tokens 2..n: the first token of a span cannot be predicted, the others can only
      // be at the repetition, by copying. Logits at position p predict the token at p + 1.
      const int64_t first = 1, second = 1 + opts.span_tokens + gap;
      auto occurrence = [&](int64_t pos) -> int64_t {
        if (pos >= first && pos < first + opts.span_tokens) return 0;
        if (pos >= second && pos < second + opts.span_tokens) return 1;
        return -1;
      };
      CKV_RETURN_IF_ERROR(ForEachPrediction(
          model, seq, opts.kv, opts.forward_tokens, [&](int64_t pos, const float* logits) {
            const int64_t occ = occurrence(pos);
            const int64_t k = pos - (occ == 0 ? first : second);
            if (occ < 0 || k == 0) return;
            const double nll = TokenNll(logits, vocab, span[k]);
            if (occ == 0) {
              row.first_nll += nll;
            } else {
              row.second_nll += nll;
              row.second_top1 += Argmax(std::span<const float>(logits, vocab)) == span[k] ? 1 : 0;
              ++scored;
            }
          }));
    }
    row.first_nll /= scored;
    row.second_nll /= scored;
    row.second_top1 /= scored;
    rows.push_back(row);
  }
  return rows;
}

}  // namespace ckv
