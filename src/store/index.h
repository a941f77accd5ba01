// The in-memory index of a store: every prefix's summary (no token ids), content-hash buckets for
// longest-prefix lookup, reference counts of segments, LRU times. Persisted as one compact binary
// file (a cache of the manifests: Open rebuilds what is missing or stale from them).
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "ckv/prefix_store.h"
#include "store/manifest.h"

namespace ckv::store_internal {

// Hash chain over c-token blocks of token ids: h[0] = H(seed, fingerprint, normalized layout),
// h[i] = H(h[i-1], ids of block i) for each full block; size floor(n / c) + 1.
std::vector<uint64_t> ChainHashes(uint64_t fingerprint, const StoreLayout& layout,
                                  std::span<const int32_t> tokens);

struct IndexSegment {
  std::string name;
  int64_t bytes = 0;
};

struct IndexEntry {
  PrefixInfo info;
  uint64_t bucket = 0;   // chain hash after the prefix's full blocks
  uint64_t use_seq = 0;  // orders uses within one millisecond (LRU ties)
  std::vector<IndexSegment> segments;
};

IndexEntry EntryFromManifest(const Manifest& m);

class PrefixIndex {
 public:
  // Adds the entry (id must be new) and references its segments.
  void Add(IndexEntry e);
  // Drops the entry; returns the segments no longer referenced (their files may be deleted).
  std::vector<std::string> Erase(const std::string& id);
  const IndexEntry* Find(const std::string& id) const;
  IndexEntry* FindMutable(const std::string& id);
  // Entries whose bucket key is `key`.
  std::vector<const IndexEntry*> Bucket(uint64_t key) const;
  // Extra references held by an in-flight Put (so eviction / removal keeps the files).
  void Pin(const std::vector<IndexSegment>& segments);
  std::vector<std::string> Unpin(const std::vector<IndexSegment>& segments);
  bool HasSegment(const std::string& name) const { return segments_.count(name) != 0; }
  std::vector<std::string> IdsUsingSegment(const std::string& name) const;
  // Least recently used entry other than `exclude`; nullptr when none.
  const IndexEntry* LeastRecentlyUsed(const std::string& exclude) const;

  uint64_t max_use_seq() const;
  int64_t total_bytes() const { return total_bytes_; }  // distinct referenced segments
  size_t size() const { return entries_.size(); }
  const std::map<std::string, IndexEntry>& entries() const { return entries_; }

  // Binary file: "CKVINDX1", u64 count, entries, u64 XXH3 of everything before it.
  std::string Encode() const;
  static Result<PrefixIndex> Decode(const std::string& bytes, const std::string& path);

 private:
  struct SegState {
    int refs = 0;
    int64_t bytes = 0;
  };
  void Ref(const IndexSegment& s);
  bool Unref(const std::string& name);  // true when the count drops to zero

  std::map<std::string, IndexEntry> entries_;
  std::unordered_multimap<uint64_t, std::string> buckets_;
  std::unordered_map<std::string, SegState> segments_;
  int64_t total_bytes_ = 0;
};

}  // namespace ckv::store_internal
