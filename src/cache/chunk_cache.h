// A bounded in-memory cache of KV chunk data loaded from the store, with pluggable
// eviction: attention-guided (ContiguousKV: score S = I x F, cumulative attention importance
// times access count, lowest evicted first), LRU, or IMPRESS's frequency x important-fraction.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <tuple>
#include <vector>

namespace ckv {

enum class CacheEviction { kAttentionGuided, kLru, kImpressScore };

// Identifies one cached unit: a data segment of a stored prefix, the layer group it covers
// (a period, or a single layer for layer-wise layouts) and the chunk.
struct ChunkKey {
  uint64_t segment = 0;
  int32_t group = 0;
  int64_t chunk = 0;
  auto operator<=>(const ChunkKey&) const = default;
};

struct CacheStats {
  int64_t hits = 0;
  int64_t misses = 0;
  int64_t hit_bytes = 0;
  int64_t inserted_bytes = 0;
  int64_t evicted_bytes = 0;
  int64_t evictions = 0;
};

class ChunkCache {
 public:
  using Data = std::shared_ptr<const std::vector<unsigned char>>;

  ChunkCache(int64_t capacity_bytes, CacheEviction eviction)
      : capacity_(capacity_bytes), eviction_(eviction) {}

  // The cached bytes (and one more access counted) or nullptr.
  Data Lookup(const ChunkKey& key);
  // Inserts (or replaces) an entry, evicting others as needed. Entries larger than the whole
  // capacity are not cached. Returns whether it was inserted.
  bool Insert(const ChunkKey& key, Data data);
  // Attention feedback for an entry that was used: `importance` is the attention mass the
  // request gave the chunk (attention-guided), `important_fraction` the fraction of its
  // tokens that were selected (IMPRESS). Unknown keys are ignored.
  void Feedback(const ChunkKey& key, double importance, double important_fraction);

  int64_t bytes() const;
  int64_t capacity() const { return capacity_; }
  CacheEviction eviction() const { return eviction_; }
  // Only attention-guided eviction ranks entries by the attention mass fed through Feedback;
  // the others need no observed attention (and the engine then skips computing it).
  bool uses_attention_importance() const { return eviction_ == CacheEviction::kAttentionGuided; }
  size_t size() const;
  CacheStats stats() const;
  // Keys in the order they would be evicted (first = next victim); for tests and debugging.
  std::vector<ChunkKey> EvictionOrder() const;

 private:
  struct Entry {
    Data data;
    double importance = 0;      // I: cumulative attention mass
    double accesses = 0;        // F: access count
    double important_frac = 0;  // IMPRESS: moving average of the important fraction
    uint64_t last_use = 0;      // LRU clock
    double rank = 0;            // the key in `order_` (lower = evicted first)
  };
  double Rank(const Entry& e) const;
  void Reorder(const ChunkKey& key, Entry& e);
  void EvictUntilFits(int64_t incoming);

  const int64_t capacity_;
  const CacheEviction eviction_;
  mutable std::mutex mu_;
  std::map<ChunkKey, Entry> entries_;
  std::set<std::pair<double, ChunkKey>> order_;
  int64_t bytes_ = 0;
  uint64_t clock_ = 0;
  CacheStats stats_;
};

}  // namespace ckv
