// The persistent prefix KV store: stored prefixes (token ids + every layer's K/V in bf16) on
// local disk in ContiguousChunk layout, found by content, published atomically, checksummed.
//
// Directory of a store:
//   LOCK                      flock()ed by the one PrefixStore that has the directory open
//   index                     compact index of all prefixes (a cache: rebuilt from manifests)
//   manifests/<id>.manifest   one per prefix; the commit point (a prefix exists iff it verifies)
//   segments/<seg>.kv         K/V data of a chunk range (period-major, layer-major or IMPRESS)
//   segments/<seg>.sum        per-chunk key summaries of the same chunk range
//   quarantine/               manifests and segment files found corrupt, moved aside
// A prefix is a list of segments; an extension of a stored prefix (multi-turn) references the
// parent's segments for the parent's full chunks and writes only the rest. Nothing published is
// ever rewritten; segment files are deleted when no manifest references them any more.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "ckv/model_config.h"
#include "ckv/status.h"

namespace ckv {

namespace store_internal {
struct HandleState;
class StoreCore;
}  // namespace store_internal

enum class LayoutKind {
  // for each period of p layers, for each chunk, for each layer of the period: K [c][kv_dim]
  // then V [c][kv_dim]. One read unit = the p layers of one (period, chunk).
  kContiguousPeriodMajor,
  // for each layer, for each chunk: K then V. One read unit = one (layer, chunk).
  kContiguousLayerMajor,
  // IMPRESS baseline: for each layer, for each chunk: K, then V, each its own read unit; then a
  // copy of the probe heads' keys for all tokens, one contiguous block per layer.
  kImpress,
};

// How a prefix is cut and laid out. Two layouts are the same iff their normalized fields are
// equal (period_layers only matters for period-major, probe_heads only for IMPRESS).
struct StoreLayout {
  LayoutKind kind = LayoutKind::kContiguousPeriodMajor;
  int chunk_tokens = 16;  // c: tokens per chunk (IMPRESS: 64)
  int period_layers = 8;  // p: layers per period (period-major only)
  int probe_heads = 3;    // IMPRESS: query heads 0..probe_heads-1 whose KV heads get a key copy

  static StoreLayout PeriodMajor(int chunk_tokens = 16, int period_layers = 8) {
    return {LayoutKind::kContiguousPeriodMajor, chunk_tokens, period_layers, 3};
  }
  static StoreLayout LayerMajor(int chunk_tokens = 16) {
    return {LayoutKind::kContiguousLayerMajor, chunk_tokens, 1, 3};
  }
  static StoreLayout Impress(int chunk_tokens = 64, int probe_heads = 3) {
    return {LayoutKind::kImpress, chunk_tokens, 1, probe_heads};
  }
  // Zeroes the fields the kind ignores, so equal layouts compare (and hash) equal.
  StoreLayout Normalized() const;
  bool operator==(const StoreLayout& o) const;
  std::string ToString() const;  // "period_major(c=16,p=8)"
};

struct StoreOptions {
  // Bound on the bytes of all data segments (.kv + .sum); 0 = unbounded. A Put that would
  // exceed it first evicts least-recently-used whole prefixes.
  int64_t max_bytes = 0;
  // fsync files and directories on publication (off only for tests and throwaway stores).
  bool sync = true;
  // Fault injection for tests: called before every write, fsync, rename or unlink of a store
  // file with its path (a rename's source); a non-zero return is used as the errno of that call
  // (e.g. ENOSPC, EIO).
  std::function<int(const std::string& path)> fault_injection;
};

// One layer of the prefix to store: [n_tokens][kv_dim] bf16 each, K after RoPE.
struct KVLayerData {
  const uint16_t* k = nullptr;
  const uint16_t* v = nullptr;
};

struct PrefixInfo {
  std::string id;  // 16 hex digits, random
  uint64_t fingerprint = 0;
  StoreLayout layout;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int64_t n_tokens = 0;
  int64_t n_chunks = 0;     // ceil(n_tokens / chunk_tokens)
  int64_t bytes = 0;        // bytes of the segments this prefix wrote (its own)
  int64_t total_bytes = 0;  // bytes of all segments it references (own + inherited)
  int num_segments = 0;
  std::string parent_id;  // the prefix it extended when written ("" if none; may be gone now)
  int64_t created_unix_ms = 0;
  int64_t last_used_unix_ms = 0;
};

// K+V of one (layer, chunk) in the contiguous layouts, K or V alone in IMPRESS.
enum class KVPart { kKV, kK, kV };

// A checksummed byte range of a file (what a reader verifies after reading).
struct Extent {
  int file = -1;          // index into PrefixHandle::files()
  uint64_t offset = 0;    // bytes from the start of the file
  uint32_t length = 0;    // bytes covered by the checksum (no padding)
  uint64_t checksum = 0;  // XXH3-64 of those bytes
};

// One read: 4 KiB-aligned offset, length a multiple of 4 KiB (padding included), so an O_DIRECT
// read into an aligned buffer needs no bounce buffer. Holds one or more extents.
struct ReadUnit {
  int file = -1;
  uint64_t offset = 0;
  uint32_t length = 0;
};

// A per-layer block covering a chunk range (summaries, IMPRESS probe keys): one read each.
struct LayerBlock {
  ReadUnit unit;
  Extent extent;  // at unit.offset, length <= unit.length
  int64_t first_chunk = 0;
  int64_t n_chunks = 0;
};

struct StoreFile {
  std::string path;
  int fd = -1;         // O_RDONLY, owned by the handle
  int direct_fd = -1;  // O_RDONLY | O_DIRECT, or -1 where the file system refuses O_DIRECT
  uint64_t size = 0;
};

// An immutable view of one published prefix: its manifest and open descriptors of its files.
// Stays readable after the prefix is removed or evicted (the descriptors keep the files alive).
// Thread-safe (const). A checksum mismatch found through it quarantines the prefix in the store.
class PrefixHandle {
 public:
  explicit PrefixHandle(std::unique_ptr<store_internal::HandleState> state);  // store-internal
  ~PrefixHandle();
  PrefixHandle(const PrefixHandle&) = delete;
  PrefixHandle& operator=(const PrefixHandle&) = delete;

  const PrefixInfo& info() const;
  const std::string& id() const { return info().id; }
  const StoreLayout& layout() const { return info().layout; }
  int num_layers() const { return info().num_layers; }
  int kv_dim() const { return info().num_kv_heads * info().head_dim; }
  int chunk_tokens() const { return info().layout.chunk_tokens; }
  int64_t n_tokens() const { return info().n_tokens; }
  int64_t n_chunks() const { return info().n_chunks; }
  // Periods of period_layers layers (the last may be shorter); 1 per layer for other layouts.
  int num_periods() const;
  // Layers [first, second) of a period (period-major); {layer, layer + 1} for other layouts.
  std::pair<int, int> PeriodLayers(int period) const;
  std::span<const int32_t> tokens() const;
  // Real (unpadded) tokens of chunk j: chunk_tokens except possibly for the last chunk.
  int64_t ChunkTokens(int64_t chunk) const;
  // KV heads whose keys the IMPRESS probe copy holds (empty for other layouts).
  const std::vector<int>& probe_kv_heads() const;
  const std::vector<StoreFile>& files() const;

  // The read unit holding (layer, chunk, part): period-major: the (period of layer, chunk) unit
  // with all the period's layers; layer-major: (layer, chunk); IMPRESS: (layer, chunk, K or V).
  // Units of consecutive chunks of one period (layer) in one segment are adjacent in the file,
  // so a run of selected chunks can be read with one I/O.
  // part is kKV for the contiguous layouts and kK / kV for IMPRESS.
  Result<ReadUnit> LocateUnit(int layer, int64_t chunk, KVPart part = KVPart::kKV) const;
  // The extent of (layer, chunk, part) inside that unit. Bytes: K [c][kv_dim] then V [c][kv_dim]
  // (contiguous layouts) or one of them (IMPRESS); rows past ChunkTokens(chunk) are zero.
  Result<Extent> LocateExtent(int layer, int64_t chunk, KVPart part = KVPart::kKV) const;
  // Layer `layer`'s key summaries, one block per segment, in chunk order. Block bytes:
  // [chunk][stat: min, max, mean][kv_dim] bf16 (min/max exact, mean rounded to nearest).
  std::vector<LayerBlock> SummaryBlocks(int layer) const;
  // IMPRESS: layer `layer`'s probe-key copy, one block per segment, in chunk order. Bytes:
  // [n_chunks * chunk_tokens tokens][probe_kv_heads().size()][head_dim] bf16, zero-padded.
  std::vector<LayerBlock> ProbeKeyBlocks(int layer) const;

  // Checks `bytes` (extent.length of them) against the extent's checksum; on mismatch returns
  // Corruption naming prefix, file, layer and chunk, and quarantines the prefix.
  Status VerifyExtent(int layer, int64_t chunk, KVPart part, const void* bytes) const;
  // The same for a kKV extent whose K rows (the first half) and V rows sit in two buffers, as
  // when the keys came with an earlier read; nothing is copied.
  Status VerifyExtent(int layer, int64_t chunk, const void* k_half, const void* v_half) const;
  Status VerifyBlock(const LayerBlock& block, int layer, const void* bytes) const;

  // Synchronous reads (pread through the page cache), verified. Used by tests and fallbacks.
  // K and V of (layer, chunk): chunk_tokens rows of kv_dim each (rows past the real ones zero).
  Status ReadLayerChunk(int layer, int64_t chunk, uint16_t* k_out, uint16_t* v_out) const;
  // Whole layer: n_tokens rows of kv_dim each.
  Status ReadLayer(int layer, uint16_t* k_out, uint16_t* v_out) const;
  // Summaries of every chunk of a layer as float: [n_chunks][3][kv_dim] (min, max, mean).
  Result<std::vector<float>> ReadSummaries(int layer) const;
  // IMPRESS probe keys of a layer: [n_tokens][probe_kv_heads().size()][head_dim] bf16.
  Result<std::vector<uint16_t>> ReadProbeKeys(int layer) const;
  // Reads and checks every checksum of the prefix (data, summaries, probe keys).
  Status VerifyAll() const;

 private:
  // OK when `actual` is e's stored checksum; else Corruption and quarantine.
  Status CheckExtent(const Extent& e, int layer, int64_t chunk, KVPart part, uint64_t actual) const;
  std::unique_ptr<store_internal::HandleState> s_;
};

class PrefixStore {
 public:
  // Opens (creating if needed) the store in `dir`: takes the directory's lock, removes
  // temporary files and unreferenced segments left by a crash, loads the index (rebuilding it
  // from the manifests when missing or out of date).
  static Result<std::unique_ptr<PrefixStore>> Open(const std::string& dir,
                                                   const StoreOptions& options = {});
  ~PrefixStore();  // persists the index (LRU times), releases the lock
  PrefixStore(const PrefixStore&) = delete;
  PrefixStore& operator=(const PrefixStore&) = delete;

  // Stores `tokens` with their K/V (layers.size() == cfg.num_layers, each [n][kv_dim]). When a
  // stored prefix of the same fingerprint and layout is a prefix of `tokens`, the new entry
  // references its full chunks and writes only the rest; when one equals `tokens`, that one is
  // returned (and touched). Evicts LRU prefixes to stay within max_bytes; NoSpace when it cannot,
  // or when the disk is full (nothing of the failed Put remains). progress(f), f in [0, 1].
  Result<PrefixInfo> Put(uint64_t fingerprint, const ModelConfig& cfg, const StoreLayout& layout,
                         std::span<const int32_t> tokens, std::span<const KVLayerData> layers,
                         const std::function<void(double)>& progress = {});

  // The stored prefix with the most tokens that is a prefix of `tokens` (same fingerprint and
  // layout; whole stored prefixes only). Touches it. Entries whose manifest fails to verify are
  // quarantined and skipped.
  std::optional<PrefixInfo> FindLongestPrefix(uint64_t fingerprint, const StoreLayout& layout,
                                              std::span<const int32_t> tokens);

  std::vector<PrefixInfo> List() const;  // by id
  Result<PrefixInfo> Info(const std::string& id) const;
  Status Touch(const std::string& id);   // marks as used now (LRU)
  Status Remove(const std::string& id);  // drops the prefix; deletes segments no one uses
  // Reads every checksum; quarantines the prefix and returns Corruption on failure.
  Status Verify(const std::string& id);
  // Moves the prefix aside (not listed or matched any more); for readers that detect damage.
  Status Quarantine(const std::string& id, const std::string& reason);
  // Opens the prefix for reading (touches it). Checks file sizes and checksum tables.
  Result<std::shared_ptr<const PrefixHandle>> OpenPrefix(const std::string& id);

  int64_t total_bytes() const;  // all segments on disk (shared segments counted once)
  size_t size() const;          // number of prefixes
  const std::string& dir() const;
  // Writes the index file now (otherwise done when the store is closed).
  Status Flush();

 private:
  explicit PrefixStore(std::shared_ptr<store_internal::StoreCore> core);
  std::shared_ptr<store_internal::StoreCore> core_;
};

}  // namespace ckv
