// The manifest of one stored prefix: identity (fingerprint, layout, model shape, token ids) and
// the segments holding its chunks, with the checksums that vouch for them. JSON text followed by
// a trailer "\n#xxh3=<16 hex digits of XXH3-64 of the JSON text>\n". Written once, never changed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ckv/prefix_store.h"
#include "store/layout.h"

namespace ckv::store_internal {

// A chunk range of the prefix stored in segments/<name>.kv and segments/<name>.sum.
struct SegmentRef {
  std::string name;                         // 16 hex digits
  int64_t first_chunk = 0;                  // prefix chunk index of the segment's first chunk
  int64_t stored_chunks = 0;                // chunks in the segment's files
  int64_t stored_tokens = 0;                // real tokens in them (the last chunk may be partial)
  int64_t used_chunks = 0;                  // chunks this prefix takes from it, from first_chunk on
  bool own = false;                         // written by this prefix (not inherited from a parent)
  uint64_t kv_bytes = 0;                    // size of the .kv file
  uint64_t sum_bytes = 0;                   // size of the .sum file
  uint64_t table_checksum = 0;              // XXH3 of the .kv checksum table
  std::vector<uint64_t> summary_checksums;  // XXH3 of each layer's summary block
  int64_t bytes() const { return int64_t(kv_bytes + sum_bytes); }
};

struct Manifest {
  std::string id;  // 16 hex digits
  uint64_t fingerprint = 0;
  StoreLayout layout;  // normalized
  ModelShape shape;
  std::vector<int32_t> tokens;
  std::string parent_id;
  int64_t created_unix_ms = 0;
  std::vector<SegmentRef> segments;  // in chunk order, covering chunks [0, n_chunks)

  int64_t n_tokens() const { return int64_t(tokens.size()); }
  int64_t n_chunks() const;
  int64_t own_bytes() const;
  int64_t total_bytes() const;
};

std::string EncodeManifest(const Manifest& m);
// Verifies the trailer checksum and every field's consistency; errors name `path`.
Result<Manifest> DecodeManifest(const std::string& bytes, const std::string& path);
bool IsHexId(const std::string& s);

}  // namespace ckv::store_internal
