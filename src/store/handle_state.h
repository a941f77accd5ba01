// What a PrefixHandle holds: the verified manifest, each segment's geometry and checksum table,
// and the open descriptors of the segment files (closed with the handle).
#pragma once

#include <memory>
#include <vector>

#include "ckv/prefix_store.h"
#include "store/layout.h"
#include "store/manifest.h"

namespace ckv::store_internal {

class StoreCore;

struct HandleSegment {
  SegmentRef ref;
  SegmentGeometry geom;
  int kv_file = -1;  // index into HandleState::files
  int sum_file = -1;
  std::vector<uint64_t> table;  // extent checksums (ExtentIndex order), then probe blocks
};

struct HandleState {
  ~HandleState();  // closes the descriptors in `files`
  PrefixInfo info;
  Manifest manifest;
  std::vector<int> probe_heads;
  std::vector<StoreFile> files;
  std::vector<HandleSegment> segs;
  std::weak_ptr<StoreCore> store;  // to quarantine the prefix when its data fails a check

  // Index into segs of the segment holding prefix chunk `chunk`.
  size_t SegmentOf(int64_t chunk) const;
};

// Opens the files of every segment of `m`, checks their sizes and reads and verifies their
// checksum tables. Errors are Corruption (naming the prefix and file) or IOError; `bad_segment`
// is set to the segment at fault when there is one.
Result<std::unique_ptr<HandleState>> OpenHandleState(const Manifest& m,
                                                     const std::string& segments_dir,
                                                     std::string* bad_segment);

}  // namespace ckv::store_internal
