// Byte ranges of a stored prefix for every KV source policy (ContiguousKV, AS+LRU, AS+H2O+LRU,
// IMPRESS): each range comes from the engine's memory cache or is read on the I/O thread,
// verified there when the caller gives a check; one cache-key scheme and one accounting for
// all of them. Every read a request issues is finished before the request ends. Threading:
// one per request, used by the thread that runs the request's prefill.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "pipeline/kv_source_policy.h"

namespace ckv {

// One fetched range: either a loader slot (read from SSD) or a cache entry.
struct FetchedRange {
  std::shared_ptr<UnitSlot> slot;  // set when read from SSD
  ChunkCache::Data cached;         // set on a cache hit
  ChunkKey key;
  uint64_t offset = 0;  // file offset of bytes()[0]
  uint32_t length = 0;
  bool from_ssd() const { return slot != nullptr; }
  // A copy of the bytes for the cache, which keeps its own (the loader's buffer goes back to
  // the bounded prefetch pool). Only for a range read successfully.
  ChunkCache::Data Copy() const;
  const std::byte* bytes() const {
    return cached ? reinterpret_cast<const std::byte*>(cached->data()) : slot->data();
  }
  // The bytes at file offset `file_offset` (inside the range).
  const std::byte* At(uint64_t file_offset) const { return bytes() + (file_offset - offset); }
};

// Cache keys: the same stored bytes cut the same way get the same key, whatever the system,
// so systems reading whole read units share entries with each other; a different cut of the
// same bytes (a K or V half) gets another `cut`, never a colliding key. `group` is the layer
// group the range serves (a period, or a layer); ContiguousKV's scoring keys use -1 - period.
enum class RangeCut { kUnit = 0, kKeysHalf = 1, kValuesHalf = 2 };

class PrefixRangeReader {
 public:
  // A new request; its accounting goes to `acct` (the policy's, returned by its End).
  void Reset(const RequestContext& ctx, PolicyAccounting* acct);

  ChunkKey Key(int file, RangeCut cut, int32_t group, uint64_t offset) const;
  // From the cache or a new read on the I/O thread. `offset` and `length` must be 4 KiB
  // aligned. Accounting (bytes, hits, misses) is Account's, once the caller knows what the
  // range was for.
  std::shared_ptr<FetchedRange> Fetch(int file, uint64_t offset, uint32_t length,
                                      const ChunkKey& key,
                                      std::function<Status(const std::byte*)> verify,
                                      std::string label);
  // Like Fetch, for identification data read a layer ahead of need (it does not depend on any
  // selection): nullptr instead of a synchronous read when the prefetch pool is full, so
  // reading ahead never blocks compute; the caller then fetches the range when it needs it.
  std::shared_ptr<FetchedRange> FetchAhead(int file, uint64_t offset, uint32_t length,
                                           const ChunkKey& key,
                                           std::function<Status(const std::byte*)> verify,
                                           std::string label);
  // Blocks until the range is in memory (counted as I/O wait); its read/verify status.
  Status Wait(const FetchedRange& r);
  // Counts a fetched range once: read from SSD, its bytes go to ssd_bytes_read (data attended
  // or loaded to be attended) or scoring_bytes_read (identification only), and a cache miss
  // when there is a cache; served by the cache, a hit (cache_hits, cache_bytes_hit) or, for
  // identification, scoring_bytes_hit.
  void Account(const FetchedRange& r, bool scoring) const;
  // Counts a range read for attention that nothing attended (a mispredicted speculative read):
  // its SSD bytes were read and wasted; no hit or miss.
  void AccountWasted(const FetchedRange& r) const;
  // A range Account counted as identification whose bytes were attended after all (keys a
  // scoring read brought and a selected unit then used): its SSD bytes move from
  // scoring_bytes_read to ssd_bytes_read. Once per range.
  void AccountAttendedAfterAll(const FetchedRange& r) const;
  // Copies a successfully read (and verified, if it had a check) range into the cache.
  void Insert(const FetchedRange& r) const;
  void Insert(const ChunkKey& key, ChunkCache::Data data) const;
  void Feedback(const ChunkKey& key, double importance, double important_fraction) const;
  // Waits for every read this request issued (reads of a failed request included).
  void Drain();

 private:
  std::shared_ptr<FetchedRange> Start(int file, uint64_t offset, uint32_t length,
                                      const ChunkKey& key,
                                      std::function<Status(const std::byte*)> verify,
                                      std::string label, bool ahead);

  RequestContext ctx_;
  PolicyAccounting* acct_ = nullptr;
  std::vector<uint64_t> path_hash_;
  // Weak: a range the policy has released gives its pool buffer back at once (the loader
  // holds an in-flight slot until it completes), so the prefetch pool bounds what a policy
  // holds, not everything a request read.
  std::vector<std::weak_ptr<UnitSlot>> issued_;
};

// [begin, end) widened to 4 KiB alignment, as O_DIRECT needs.
inline uint64_t AlignDown4k(uint64_t v) {
  return v & ~uint64_t{4095};
}
inline uint64_t AlignUp4k(uint64_t v) {
  return (v + 4095) & ~uint64_t{4095};
}

}  // namespace ckv
