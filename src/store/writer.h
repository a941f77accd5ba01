// Writing one data segment (the .kv file in the layout's order with its checksum table, and the
// .sum file of key summaries) for a chunk range of a prefix.
#pragma once

#include <functional>
#include <span>
#include <string>

#include "ckv/prefix_store.h"
#include "store/file_util.h"
#include "store/layout.h"
#include "store/manifest.h"

namespace ckv::store_internal {

struct SegmentWriteRequest {
  StoreLayout layout;  // normalized
  ModelShape shape;
  std::span<const KVLayerData> layers;  // the whole prefix: [n_tokens][kv_dim] per layer
  int64_t n_tokens = 0;
  int64_t first_chunk = 0;  // the segment holds chunks [first_chunk, ceil(n_tokens / c))
  std::string segments_dir;
  std::string name;  // files <segments_dir>/<name>.kv and .sum
  bool sync = true;
  const FaultHook* fault = nullptr;
  const std::function<void(double)>* progress = nullptr;  // fraction of the segment's bytes
};

// Bytes the segment's two files will take.
int64_t SegmentBytes(const StoreLayout& layout, const ModelShape& shape, int64_t n_chunks);

// Writes both files under temporary names, then publishes them by rename (fsynced when `sync`;
// the caller fsyncs the directory). On failure no file of the segment remains.
Result<SegmentRef> WriteSegment(const SegmentWriteRequest& req);

}  // namespace ckv::store_internal
