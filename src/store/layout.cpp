#include "store/layout.h"

#include <algorithm>
#include <cassert>

namespace ckv {

StoreLayout StoreLayout::Normalized() const {
  StoreLayout l = *this;
  if (l.kind != LayoutKind::kContiguousPeriodMajor) l.period_layers = 0;
  if (l.kind != LayoutKind::kImpress) l.probe_heads = 0;
  return l;
}

bool StoreLayout::operator==(const StoreLayout& o) const {
  const StoreLayout a = Normalized();
  const StoreLayout b = o.Normalized();
  return a.kind == b.kind && a.chunk_tokens == b.chunk_tokens &&
         a.period_layers == b.period_layers && a.probe_heads == b.probe_heads;
}

std::string StoreLayout::ToString() const {
  std::string s =
      std::string(store_internal::LayoutKindName(kind)) + "(c=" + std::to_string(chunk_tokens);
  if (kind == LayoutKind::kContiguousPeriodMajor) s += ",p=" + std::to_string(period_layers);
  if (kind == LayoutKind::kImpress) s += ",probe_heads=" + std::to_string(probe_heads);
  return s + ")";
}

namespace store_internal {

const char* LayoutKindName(LayoutKind kind) {
  switch (kind) {
    case LayoutKind::kContiguousPeriodMajor:
      return "period_major";
    case LayoutKind::kContiguousLayerMajor:
      return "layer_major";
    case LayoutKind::kImpress:
      return "impress";
  }
  return "unknown";
}

std::optional<LayoutKind> ParseLayoutKind(const std::string& name) {
  for (LayoutKind k : {LayoutKind::kContiguousPeriodMajor, LayoutKind::kContiguousLayerMajor,
                       LayoutKind::kImpress}) {
    if (name == LayoutKindName(k)) return k;
  }
  return std::nullopt;
}

Status ValidateLayout(const StoreLayout& layout, const ModelShape& shape) {
  if (shape.num_layers < 1 || shape.num_heads < 1 || shape.num_kv_heads < 1 || shape.head_dim < 1 ||
      shape.num_kv_heads > shape.num_heads || shape.num_heads % shape.num_kv_heads != 0) {
    return Status::InvalidArgument(
        "model shape not storable: layers " + std::to_string(shape.num_layers) + ", heads " +
        std::to_string(shape.num_heads) + ", kv heads " + std::to_string(shape.num_kv_heads) +
        ", head_dim " + std::to_string(shape.head_dim));
  }
  if (layout.chunk_tokens < 1 || layout.chunk_tokens > 4096) {
    return Status::InvalidArgument("layout " + layout.ToString() +
                                   ": chunk_tokens must be in [1, 4096]");
  }
  if (layout.kind == LayoutKind::kContiguousPeriodMajor && layout.period_layers < 1) {
    return Status::InvalidArgument("layout " + layout.ToString() + ": period_layers must be >= 1");
  }
  if (layout.kind == LayoutKind::kImpress &&
      (layout.probe_heads < 1 || layout.probe_heads > shape.num_heads)) {
    return Status::InvalidArgument(
        "layout " + layout.ToString() +
        ": probe_heads must be in [1, num_heads = " + std::to_string(shape.num_heads) + "]");
  }
  const uint64_t unit = uint64_t{2} * 2 * uint64_t(layout.chunk_tokens) * uint64_t(shape.kv_dim()) *
                        uint64_t(std::max(1, layout.period_layers));
  if (unit > (uint64_t{1} << 30)) {
    return Status::InvalidArgument("layout " + layout.ToString() + ": read unit too large");
  }
  return Status::OK();
}

std::vector<int> ProbeKvHeads(const StoreLayout& layout, const ModelShape& shape) {
  std::vector<int> heads;
  if (layout.kind != LayoutKind::kImpress) return heads;
  for (int h = 0; h < layout.probe_heads && h < shape.num_heads; ++h) {
    const int kvh = h * shape.num_kv_heads / shape.num_heads;
    if (std::find(heads.begin(), heads.end(), kvh) == heads.end()) heads.push_back(kvh);
  }
  return heads;
}

SegmentGeometry::SegmentGeometry(const StoreLayout& layout, const ModelShape& shape,
                                 int64_t n_chunks)
    : layout_(layout), shape_(shape), n_chunks_(n_chunks) {
  const uint64_t half = uint64_t(layout.chunk_tokens) * uint64_t(shape.kv_dim()) * 2;
  const uint64_t nc = uint64_t(n_chunks);
  const int L = shape.num_layers;
  uint64_t end = 0;
  switch (layout.kind) {
    case LayoutKind::kContiguousPeriodMajor: {
      period_layers_ = std::min(layout.period_layers, L);
      num_periods_ = (L + period_layers_ - 1) / period_layers_;
      extent_bytes_ = 2 * half;
      for (int q = 0; q < num_periods_; ++q) {
        period_base_.push_back(end);
        end += nc * UnitLength(q * period_layers_);
      }
      num_extents_ = size_t(L) * nc;
      break;
    }
    case LayoutKind::kContiguousLayerMajor:
      num_periods_ = L;
      extent_bytes_ = 2 * half;
      end = uint64_t(L) * nc * AlignUp(extent_bytes_);
      num_extents_ = size_t(L) * nc;
      break;
    case LayoutKind::kImpress:
      num_periods_ = L;
      extent_bytes_ = half;
      end = uint64_t(L) * nc * 2 * AlignUp(extent_bytes_);
      num_extents_ = size_t(L) * nc * 2;
      probe_heads_ = ProbeKvHeads(layout, shape).size();
      probe_bytes_ =
          nc * uint64_t(layout.chunk_tokens) * probe_heads_ * uint64_t(shape.head_dim) * 2;
      probe_base_ = end;
      end += uint64_t(L) * AlignUp(probe_bytes_);
      break;
  }
  table_offset_ = AlignUp(end);
}

uint64_t SegmentGeometry::half_bytes() const {
  return uint64_t(layout_.chunk_tokens) * uint64_t(shape_.kv_dim()) * 2;
}

uint32_t SegmentGeometry::UnitLength(int layer) const {
  if (is_period_major()) {
    const int q = layer / period_layers_;
    const int lp = std::min(period_layers_, shape_.num_layers - q * period_layers_);
    return static_cast<uint32_t>(AlignUp(uint64_t(lp) * extent_bytes_));
  }
  return static_cast<uint32_t>(AlignUp(extent_bytes_));
}

uint64_t SegmentGeometry::UnitOffset(int layer, int64_t chunk, KVPart part) const {
  const uint64_t c = uint64_t(chunk);
  switch (layout_.kind) {
    case LayoutKind::kContiguousPeriodMajor: {
      const int q = layer / period_layers_;
      return period_base_[size_t(q)] + c * UnitLength(layer);
    }
    case LayoutKind::kContiguousLayerMajor:
      return (uint64_t(layer) * uint64_t(n_chunks_) + c) * UnitLength(layer);
    case LayoutKind::kImpress:
      return ((uint64_t(layer) * uint64_t(n_chunks_) + c) * 2 + (part == KVPart::kV ? 1 : 0)) *
             UnitLength(layer);
  }
  return 0;
}

uint64_t SegmentGeometry::ExtentOffset(int layer, int64_t chunk, KVPart part) const {
  uint64_t off = UnitOffset(layer, chunk, part);
  if (is_period_major()) off += uint64_t(layer % period_layers_) * extent_bytes_;
  return off;
}

size_t SegmentGeometry::ExtentIndex(int layer, int64_t chunk, KVPart part) const {
  const size_t base = size_t(layer) * size_t(n_chunks_) + size_t(chunk);
  if (is_impress()) return base * 2 + (part == KVPart::kV ? 1 : 0);
  return base;
}

size_t SegmentGeometry::num_table_entries() const {
  return num_extents_ + (is_impress() ? size_t(shape_.num_layers) : 0);
}

uint64_t SegmentGeometry::summary_chunk_bytes() const {
  return uint64_t{3} * uint64_t(shape_.kv_dim()) * 2;
}

}  // namespace store_internal
}  // namespace ckv
