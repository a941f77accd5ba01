// Layout descriptors and the geometry of a data segment: where each (layer, chunk) extent, each
// 4 KiB-aligned read unit, each probe-key block and each summary block lives in its files.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ckv/prefix_store.h"

namespace ckv::store_internal {

constexpr uint64_t kAlign = 4096;
inline uint64_t AlignUp(uint64_t v) {
  return (v + kAlign - 1) / kAlign * kAlign;
}

// The dimensions of the model a prefix belongs to that the layout depends on.
struct ModelShape {
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int kv_dim() const { return num_kv_heads * head_dim; }
  bool operator==(const ModelShape&) const = default;
  static ModelShape From(const ModelConfig& cfg) {
    return {cfg.num_layers, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim};
  }
};

const char* LayoutKindName(LayoutKind kind);  // "period_major", "layer_major", "impress"
std::optional<LayoutKind> ParseLayoutKind(const std::string& name);
// Checks the layout's parameters against the model (chunk 1..4096 tokens, p >= 1, probe heads
// 1..num_heads) and the model's dimensions.
Status ValidateLayout(const StoreLayout& layout, const ModelShape& shape);
// KV heads serving query heads 0..probe_heads-1 (GQA: h * kv_heads / heads), deduplicated.
std::vector<int> ProbeKvHeads(const StoreLayout& layout, const ModelShape& shape);

// One segment file pair holding `n_chunks` consecutive chunks (all layers).
//  .kv:  the layout's read units, zero padding to 4 KiB per unit; IMPRESS probe blocks (one per
//        layer, 4 KiB aligned); the checksum table at a 4 KiB-aligned offset:
//        u64 magic, u64 count, count x u64 (extents in ExtentIndex order, then probe blocks).
//  .sum: per layer (4 KiB-aligned block): [chunk][min, max, mean][kv_dim] bf16.
class SegmentGeometry {
 public:
  SegmentGeometry(const StoreLayout& layout, const ModelShape& shape, int64_t n_chunks);

  int64_t n_chunks() const { return n_chunks_; }
  int num_periods() const { return num_periods_; }
  int PeriodOf(int layer) const { return is_period_major() ? layer / period_layers_ : layer; }
  bool is_impress() const { return layout_.kind == LayoutKind::kImpress; }
  bool is_period_major() const { return layout_.kind == LayoutKind::kContiguousPeriodMajor; }
  // Bytes of one checksummed extent: K+V of (layer, chunk), or K or V alone for IMPRESS.
  uint64_t extent_bytes() const { return extent_bytes_; }
  // Rows of kv_dim bf16 per chunk half (K or V).
  uint64_t half_bytes() const;

  // `chunk` is local to the segment; `part` must be kKV (contiguous) or kK/kV (IMPRESS).
  uint64_t UnitOffset(int layer, int64_t chunk, KVPart part) const;
  uint32_t UnitLength(int layer) const;
  uint64_t ExtentOffset(int layer, int64_t chunk, KVPart part) const;
  size_t ExtentIndex(int layer, int64_t chunk, KVPart part) const;

  // IMPRESS probe keys: [n_chunks * c][probe heads][head_dim] bf16 per layer.
  size_t num_probe_heads() const { return probe_heads_; }
  uint64_t probe_bytes() const { return probe_bytes_; }
  uint64_t ProbeOffset(int layer) const {
    return probe_base_ + uint64_t(layer) * AlignUp(probe_bytes_);
  }
  size_t ProbeIndex(int layer) const { return num_extents_ + static_cast<size_t>(layer); }

  size_t num_table_entries() const;
  uint64_t table_offset() const { return table_offset_; }
  uint64_t table_bytes() const { return 16 + 8 * num_table_entries(); }
  uint64_t kv_file_bytes() const { return table_offset_ + table_bytes(); }

  uint64_t summary_chunk_bytes() const;  // 3 * kv_dim * 2
  uint64_t summary_layer_bytes() const { return summary_chunk_bytes() * uint64_t(n_chunks_); }
  uint64_t SummaryOffset(int layer) const {
    return uint64_t(layer) * AlignUp(summary_layer_bytes());
  }
  uint64_t sum_file_bytes() const {
    return uint64_t(shape_.num_layers) * AlignUp(summary_layer_bytes());
  }

  static constexpr uint64_t kTableMagic = 0x31304c42544b5643ULL;  // "CVKTBL01"

 private:
  StoreLayout layout_;
  ModelShape shape_;
  int64_t n_chunks_;
  int period_layers_ = 1;
  int num_periods_ = 0;
  uint64_t extent_bytes_ = 0;
  std::vector<uint64_t> period_base_;  // period-major: offset of each period's region
  size_t num_extents_ = 0;
  size_t probe_heads_ = 0;
  uint64_t probe_bytes_ = 0;
  uint64_t probe_base_ = 0;
  uint64_t table_offset_ = 0;
};

}  // namespace ckv::store_internal
