// The one table of Re-Prefill systems: every name the CLI, benchmarks, evaluations and the
// server accept, the policy it runs (with which options), and the store layout and memory-cache
// eviction it comes with. Adding a system, or an alias of one, is adding a row.
//
// Threading: the table is immutable; any thread may read it.
#pragma once

#include <memory>
#include <string_view>

#include "ckv/reprefill.h"
#include "pipeline/kv_source_policy.h"

namespace ckv {

enum class SystemLayout {
  kContiguous,    // the ContiguousChunk layout the caller configures (ContiguousKV's)
  kLayerMajor64,  // 64-token layer-major blocks (AttentionStore's)
  kImpress64,     // IMPRESS's layout: 64-token K/V chunks + 3 probe heads' key copy
  kNone,          // reads no stored prefix (recompute)
};

struct SystemSpec {
  std::string_view name;    // what --system / --systems accept
  std::string_view policy;  // the ReprefillOptions::system it runs (a row whose name it is)
  // Options an alias sets (a base row, name == policy, leaves the caller's).
  ScoringSource scoring = ScoringSource::kFullKeys;
  bool impress_always_vote = false;
  SystemLayout layout = SystemLayout::kContiguous;
  std::string_view cache_policy;              // its own eviction ("" when it caches nothing)
  std::unique_ptr<KVSourcePolicy> (*make)();  // null: plain prefill of the whole context
  bool reuse_scoring_keys = true;             // ReprefillOptions::reuse_scoring_keys an alias sets
  SelectionRule selection = SelectionRule::kTopFraction;  // ReprefillOptions::selection
};

// The row named `name`, or null.
const SystemSpec* FindSystem(std::string_view name);

}  // namespace ckv
