#include "pipeline/system_registry.h"

#include <array>
#include <string>

#include "pipeline/prefix_range_reader.h"

namespace ckv {

namespace {

constexpr ScoringSource kFull = ScoringSource::kFullKeys;

const std::array<SystemSpec, 9> kSystems = {{
    {"contiguouskv", "contiguouskv", kFull, false, SystemLayout::kContiguous, "attention",
     MakeContiguousKVPolicy},
    // The paper's reads: each selected unit whole, its first layer's keys read a second time.
    {"contiguouskv-whole-units", "contiguouskv", kFull, false, SystemLayout::kContiguous,
     "attention", MakeContiguousKVPolicy, /*reuse_scoring_keys=*/false},
    // Beyond the paper: the budget is the attention mass a period may leave out, not a count.
    {"contiguouskv-coverage", "contiguouskv", kFull, false, SystemLayout::kContiguous, "attention",
     MakeContiguousKVPolicy, /*reuse_scoring_keys=*/true, SelectionRule::kMassCoverage},
    {"contiguouskv-summaries", "contiguouskv", ScoringSource::kSummaries, false,
     SystemLayout::kContiguous, "attention", MakeContiguousKVPolicy},
    {"as-lru", "as-lru", kFull, false, SystemLayout::kLayerMajor64, "lru", MakeAsLruPolicy},
    {"as-h2o-lru", "as-h2o-lru", kFull, false, SystemLayout::kLayerMajor64, "lru",
     MakeAsH2OLruPolicy},
    {"impress", "impress", kFull, false, SystemLayout::kImpress64, "impress", MakeImpressPolicy},
    {"impress-vote", "impress", kFull, true, SystemLayout::kImpress64, "impress",
     MakeImpressPolicy},
    {"recompute", "recompute", kFull, false, SystemLayout::kNone, "", nullptr},
}};

std::string Names() {
  std::string out;
  for (const SystemSpec& s : kSystems) out += (out.empty() ? "" : ", ") + std::string(s.name);
  return out;
}

}  // namespace

const SystemSpec* FindSystem(std::string_view name) {
  for (const SystemSpec& s : kSystems) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

std::vector<std::string> ReprefillSystems() {
  std::vector<std::string> out;
  for (const SystemSpec& s : kSystems) {
    if (s.name == s.policy) out.emplace_back(s.name);
  }
  return out;
}

std::vector<std::string> ReprefillSystemNames() {
  std::vector<std::string> out;
  for (const SystemSpec& s : kSystems) out.emplace_back(s.name);
  return out;
}

StoreLayout DefaultLayoutFor(const std::string& system, const StoreLayout& contiguous) {
  const SystemSpec* s = FindSystem(system);
  switch (s != nullptr ? s->layout : SystemLayout::kContiguous) {
    case SystemLayout::kLayerMajor64:
      return StoreLayout::LayerMajor(64);
    case SystemLayout::kImpress64:
      return StoreLayout::Impress(64, 3);
    case SystemLayout::kContiguous:
    case SystemLayout::kNone:
      break;
  }
  return contiguous;
}

std::string DefaultCachePolicyFor(const std::string& system) {
  const SystemSpec* s = FindSystem(system);
  return s != nullptr && !s->cache_policy.empty() ? std::string(s->cache_policy) : "attention";
}

bool SystemReadsStoredPrefix(const std::string& system) {
  const SystemSpec* s = FindSystem(system);
  return s != nullptr && s->make != nullptr;
}

Status ApplySystemName(const std::string& name, ReprefillOptions& opts) {
  const SystemSpec* s = FindSystem(name);
  if (s == nullptr) {
    return Status::InvalidArgument("system \"" + name + "\" is not one of " + Names());
  }
  opts.system = std::string(s->policy);
  // An alias sets the options that make it what it is; a base name keeps the caller's (e.g.
  // ckv reprefill --system contiguouskv --scoring summaries).
  if (s->name != s->policy) {
    opts.scoring = s->scoring;
    opts.impress_always_vote = s->impress_always_vote;
    opts.reuse_scoring_keys = s->reuse_scoring_keys;
    opts.selection = s->selection;
  }
  return Status::OK();
}

}  // namespace ckv
