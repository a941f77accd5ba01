// Request streams for `ckv bench reprefill --workload`: which prefixes are stored and which
// requests (prefix + new suffix) are sent, all cut from one text with a seeded generator so a
// run can be repeated exactly.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ckv/status.h"

namespace ckv::cli {

struct WorkloadArgs {
  std::string name = "single";  // single | manyshot | zipf | length-sweep
  int64_t prefix_tokens = 4096;
  std::vector<int64_t> prefix_lengths = {2048, 4096, 8192, 16384, 32704};  // length-sweep
  int64_t suffix_tokens = 32;
  int requests = 3;
  int prefixes = 0;          // manyshot / zipf: distinct prefixes (0: 4 / 16)
  double zipf_s = 1.0;       // zipf: popularity of rank i is proportional to 1 / i^s
  int64_t shot_tokens = 96;  // manyshot: tokens per demonstration
  uint64_t seed = 1;
};

struct BenchRequest {
  int prefix = 0;               // index into Workload::prefixes
  std::vector<int32_t> tokens;  // the whole context: prefix + suffix
};

// One group of rows in the summary (length-sweep makes one per prefix length).
struct Workload {
  std::string name;
  std::vector<std::vector<int32_t>> prefixes;
  std::vector<BenchRequest> requests;
  int64_t MeanPrefixTokens() const;
};

// `text` is the tokenized text without BOS; `bos` is prepended to every prefix when set.
// The text is reused cyclically when a workload needs more tokens than it has.
Result<std::vector<Workload>> MakeWorkloads(const WorkloadArgs& args,
                                            const std::vector<int32_t>& text,
                                            std::optional<int32_t> bos);

}  // namespace ckv::cli
