#include "ckv/perplexity.h"

#include <algorithm>
#include <span>

#include "eval/nll.h"

namespace ckv {
namespace {

// 0-255, 256-1K, 1K-2K, 2K-4K, 4K-8K, 8K-16K, ...: fine where position matters most (the
// first tokens have the least context), then doubling.
std::vector<PositionBucket> BucketsUpTo(int64_t context) {
  std::vector<PositionBucket> out;
  const int64_t edges[] = {0, 256, 1024};
  for (int i = 0; i + 1 < 3 && edges[i] < context; ++i) out.push_back({edges[i], edges[i + 1]});
  for (int64_t b = 1024; b < context; b *= 2) out.push_back({b, b * 2});
  return out;
}

Status CheckContext(const Model& model, int64_t context) {
  const int64_t max = model.config().max_position_embeddings;
  if (context < 2) {
    return Status::InvalidArgument("perplexity: --context must be at least 2 tokens, got " +
                                   std::to_string(context));
  }
  if (context > max) {
    return Status::InvalidArgument(
        "perplexity: --context " + std::to_string(context) +
        " exceeds the model's context (max_position_embeddings = " + std::to_string(max) + ")");
  }
  return Status::OK();
}

}  // namespace

Result<PerplexityReport> EvaluatePerplexity(const Model& model, const std::string& text,
                                            const PerplexityOptions& opts,
                                            const std::function<void(double)>& progress) {
  if (model.tokenizer() == nullptr) return Status::InvalidArgument("model has no tokenizer");
  const auto bos = model.tokenizer()->bos_id();
  if (!bos) return Status::InvalidArgument("perplexity: the tokenizer has no BOS token");
  if (opts.context < 0 || opts.max_windows < 0) {
    return Status::InvalidArgument("perplexity: --context and --max-windows must not be negative");
  }
  const int64_t context = opts.context > 0 ? opts.context : model.config().max_position_embeddings;
  CKV_RETURN_IF_ERROR(CheckContext(model, context));
  if (opts.forward_tokens < 1) {
    return Status::InvalidArgument("perplexity: forward_tokens must be positive");
  }
  CKV_ASSIGN_OR_RETURN(std::vector<int32_t> ids, model.tokenizer()->Encode(text, false));
  if (ids.empty()) return Status::InvalidArgument("perplexity: the text has no tokens");

  PerplexityReport report;
  report.text_tokens = static_cast<int64_t>(ids.size());
  report.context = context;
  const int64_t body = context - 1;  // text tokens per window, after BOS
  int64_t windows = report.text_tokens / body;
  if (windows == 0) {
    windows = 1;
    report.partial_window = true;
  }
  if (opts.max_windows > 0) windows = std::min(windows, opts.max_windows);
  report.windows = windows;
  const int64_t window_len =
      report.partial_window ? report.text_tokens + 1 : context;  // BOS included
  report.buckets = BucketsUpTo(window_len);

  const int vocab = model.config().vocab_size;
  std::vector<double> bucket_sum(report.buckets.size(), 0.0);
  std::vector<int64_t> bucket_n(report.buckets.size(), 0);
  std::vector<int32_t> window(window_len);
  for (int64_t w = 0; w < windows; ++w) {
    window[0] = *bos;
    std::copy_n(ids.begin() + w * body, window_len - 1, window.begin() + 1);
    // Bucketed by the position of the predicted token.
    auto predicted = [&](int64_t pos, const float* logits) {
      const double nll = TokenNll(logits, vocab, window[pos]);
      size_t b = 0;
      while (pos >= report.buckets[b].end) ++b;
      bucket_sum[b] += nll;
      ++bucket_n[b];
    };
    auto piece_done = [&](int64_t done) {
      if (progress) {
        progress((static_cast<double>(w) + static_cast<double>(done) / (window_len - 1)) /
                 static_cast<double>(windows));
      }
    };
    CKV_RETURN_IF_ERROR(
        ForEachPrediction(model, window, opts.kv, opts.forward_tokens, predicted, piece_done));
  }
  double total = 0;
  for (size_t b = 0; b < report.buckets.size(); ++b) {
    report.buckets[b].end = std::min(report.buckets[b].end, window_len);
    report.buckets[b].tokens = bucket_n[b];
    report.buckets[b].mean_nll = bucket_n[b] ? bucket_sum[b] / bucket_n[b] : 0.0;
    report.tokens_scored += bucket_n[b];
    total += bucket_sum[b];
  }
  report.mean_nll = total / static_cast<double>(report.tokens_scored);
  return report;
}

}  // namespace ckv
