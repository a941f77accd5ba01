#include "bench_workload.h"

#include <cmath>
#include <random>

namespace ckv::cli {
namespace {

// n tokens of the text from `offset` on, wrapping around at its end.
void AppendCyclic(const std::vector<int32_t>& text, size_t offset, int64_t n,
                  std::vector<int32_t>& out) {
  for (int64_t i = 0; i < n; ++i) out.push_back(text[(offset + i) % text.size()]);
}

std::vector<int32_t> Start(std::optional<int32_t> bos) {
  std::vector<int32_t> v;
  if (bos) v.push_back(*bos);
  return v;
}

// The prefix and `requests` requests whose suffixes follow it in the text, one after the other
// (the shape of a growing conversation over one document).
Workload SinglePrefix(const std::string& name, const std::vector<int32_t>& text,
                      std::optional<int32_t> bos, int64_t prefix_tokens, int64_t suffix_tokens,
                      int requests) {
  Workload w;
  w.name = name;
  std::vector<int32_t> prefix = Start(bos);
  const int64_t body = prefix_tokens - static_cast<int64_t>(prefix.size());
  AppendCyclic(text, 0, body, prefix);
  for (int r = 0; r < requests; ++r) {
    BenchRequest req{0, prefix};
    AppendCyclic(text, static_cast<size_t>(body + r * suffix_tokens), suffix_tokens, req.tokens);
    w.requests.push_back(std::move(req));
  }
  w.prefixes.push_back(std::move(prefix));
  return w;
}

// `requests` queries: each a prefix drawn by `pick`, then a passage of the text at a random
// place.
template <typename Pick>
void AddQueries(Workload& w, const WorkloadArgs& a, const std::vector<int32_t>& text, Pick& pick,
                std::mt19937_64& rng) {
  for (int r = 0; r < a.requests; ++r) {
    const int p = pick(rng);
    BenchRequest req{p, w.prefixes[p]};
    AppendCyclic(text, rng() % text.size(), a.suffix_tokens, req.tokens);
    w.requests.push_back(std::move(req));
  }
}

// Many-shot prompts: each prefix is a run of demonstrations (passages of shot_tokens drawn from
// the text), lengths spread from prefix_tokens to 1.5x; queries pick a prefix uniformly.
Workload ManyShot(const WorkloadArgs& a, const std::vector<int32_t>& text,
                  std::optional<int32_t> bos) {
  Workload w;
  w.name = "manyshot";
  std::mt19937_64 rng(a.seed);
  const int n = a.prefixes > 0 ? a.prefixes : 4;
  for (int i = 0; i < n; ++i) {
    const int64_t len = a.prefix_tokens + (n > 1 ? i * (a.prefix_tokens / 2) / (n - 1) : 0);
    std::vector<int32_t> prefix = Start(bos);
    while (static_cast<int64_t>(prefix.size()) < len) {
      const int64_t take =
          std::min<int64_t>(a.shot_tokens, len - static_cast<int64_t>(prefix.size()));
      AppendCyclic(text, rng() % text.size(), take, prefix);
    }
    w.prefixes.push_back(std::move(prefix));
  }
  std::uniform_int_distribution<int> pick(0, n - 1);
  AddQueries(w, a, text, pick, rng);
  return w;
}

// Many stored prefixes (disjoint places in the text), requested with Zipf popularity.
Workload Zipf(const WorkloadArgs& a, const std::vector<int32_t>& text, std::optional<int32_t> bos) {
  Workload w;
  w.name = "zipf";
  std::mt19937_64 rng(a.seed);
  const int n = a.prefixes > 0 ? a.prefixes : 16;
  std::vector<double> weight;
  for (int i = 0; i < n; ++i) {
    std::vector<int32_t> prefix = Start(bos);
    AppendCyclic(text, text.size() * i / n, a.prefix_tokens - static_cast<int64_t>(prefix.size()),
                 prefix);
    w.prefixes.push_back(std::move(prefix));
    weight.push_back(1.0 / std::pow(i + 1.0, a.zipf_s));
  }
  std::discrete_distribution<int> pick(weight.begin(), weight.end());
  AddQueries(w, a, text, pick, rng);
  return w;
}

}  // namespace

int64_t Workload::MeanPrefixTokens() const {
  if (requests.empty()) return 0;
  int64_t total = 0;
  for (const auto& r : requests) total += static_cast<int64_t>(prefixes[r.prefix].size());
  return total / static_cast<int64_t>(requests.size());
}

Result<std::vector<Workload>> MakeWorkloads(const WorkloadArgs& a, const std::vector<int32_t>& text,
                                            std::optional<int32_t> bos) {
  if (text.empty()) return Status::InvalidArgument("--text has no tokens");
  if (a.requests < 1) return Status::InvalidArgument("--requests must be at least 1");
  if (a.suffix_tokens < 1) return Status::InvalidArgument("--suffix-tokens must be at least 1");
  if (a.prefix_tokens < 2) return Status::InvalidArgument("--prefix-tokens must be at least 2");
  if (a.prefixes < 0) return Status::InvalidArgument("--prefixes must not be negative");
  if (a.shot_tokens < 1) return Status::InvalidArgument("--shot-tokens must be at least 1");
  if (a.name == "single") {
    return std::vector<Workload>{
        SinglePrefix("single", text, bos, a.prefix_tokens, a.suffix_tokens, a.requests)};
  }
  if (a.name == "manyshot") return std::vector<Workload>{ManyShot(a, text, bos)};
  if (a.name == "zipf") {
    if (!(a.zipf_s >= 0)) return Status::InvalidArgument("--zipf-s must be >= 0");
    return std::vector<Workload>{Zipf(a, text, bos)};
  }
  if (a.name == "length-sweep") {
    if (a.prefix_lengths.empty()) return Status::InvalidArgument("--prefix-lengths is empty");
    std::vector<Workload> out;
    for (int64_t len : a.prefix_lengths) {
      if (len < 2) return Status::InvalidArgument("--prefix-lengths must be at least 2");
      out.push_back(SinglePrefix("length-sweep", text, bos, len, a.suffix_tokens, a.requests));
    }
    return out;
  }
  return Status::InvalidArgument("--workload \"" + a.name +
                                 "\" is not one of single, manyshot, zipf, length-sweep");
}

}  // namespace ckv::cli
