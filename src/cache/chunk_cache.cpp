#include "cache/chunk_cache.h"

namespace ckv {

double ChunkCache::Rank(const Entry& e) const {
  switch (eviction_) {
    case CacheEviction::kAttentionGuided:
      return e.importance * e.accesses;
    case CacheEviction::kLru:
      return static_cast<double>(e.last_use);
    case CacheEviction::kImpressScore:
      return e.accesses * e.important_frac;
  }
  return 0;
}

void ChunkCache::Reorder(const ChunkKey& key, Entry& e) {
  order_.erase({e.rank, key});
  e.rank = Rank(e);
  order_.insert({e.rank, key});
}

ChunkCache::Data ChunkCache::Lookup(const ChunkKey& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    ++stats_.misses;
    return nullptr;
  }
  Entry& e = it->second;
  e.accesses += 1;
  e.last_use = ++clock_;
  Reorder(key, e);
  ++stats_.hits;
  stats_.hit_bytes += static_cast<int64_t>(e.data->size());
  return e.data;
}

void ChunkCache::EvictUntilFits(int64_t incoming) {
  while (!order_.empty() && bytes_ + incoming > capacity_) {
    const ChunkKey victim = order_.begin()->second;
    order_.erase(order_.begin());
    auto it = entries_.find(victim);
    const int64_t size = static_cast<int64_t>(it->second.data->size());
    bytes_ -= size;
    stats_.evicted_bytes += size;
    ++stats_.evictions;
    entries_.erase(it);
  }
}

bool ChunkCache::Insert(const ChunkKey& key, Data data) {
  if (!data) return false;
  const int64_t size = static_cast<int64_t>(data->size());
  std::lock_guard<std::mutex> lock(mu_);
  if (size > capacity_) return false;
  auto it = entries_.find(key);
  Entry e;
  if (it != entries_.end()) {
    e = it->second;  // keep the history of a re-inserted key
    order_.erase({e.rank, key});
    bytes_ -= static_cast<int64_t>(e.data->size());
    entries_.erase(it);
  } else {
    e.accesses = 1;
  }
  EvictUntilFits(size);
  e.data = std::move(data);
  e.last_use = ++clock_;
  e.rank = Rank(e);
  order_.insert({e.rank, key});
  entries_.emplace(key, std::move(e));
  bytes_ += size;
  stats_.inserted_bytes += size;
  return true;
}

void ChunkCache::Feedback(const ChunkKey& key, double importance, double important_fraction) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return;
  Entry& e = it->second;
  e.importance += importance;
  // IMPRESS keeps a moving average of the fraction of important tokens in the chunk.
  e.important_frac =
      e.accesses <= 1 ? important_fraction : 0.5 * e.important_frac + 0.5 * important_fraction;
  Reorder(key, e);
}

int64_t ChunkCache::bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_;
}

size_t ChunkCache::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_.size();
}

CacheStats ChunkCache::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

std::vector<ChunkKey> ChunkCache::EvictionOrder() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<ChunkKey> keys;
  for (const auto& [rank, key] : order_) keys.push_back(key);
  return keys;
}

}  // namespace ckv
