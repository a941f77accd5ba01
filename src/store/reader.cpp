// PrefixHandle: locating read units / extents / blocks of a published prefix, verifying them,
// and synchronous verified reads.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "store/checksum.h"
#include "store/file_util.h"
#include "store/handle_state.h"
#include "store/store_core.h"
#include "store/summaries.h"

namespace ckv {
namespace store_internal {

HandleState::~HandleState() {
  for (StoreFile& f : files) {
    if (f.fd >= 0) ::close(f.fd);
    if (f.direct_fd >= 0) ::close(f.direct_fd);
  }
}

size_t HandleState::SegmentOf(int64_t chunk) const {
  auto it =
      std::upper_bound(segs.begin(), segs.end(), chunk,
                       [](int64_t c, const HandleSegment& s) { return c < s.ref.first_chunk; });
  return size_t(it - segs.begin()) - 1;
}

namespace {

Status OpenFile(const std::string& path, uint64_t expected_size, const std::string& prefix_id,
                StoreFile* out) {
  out->path = path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      return Status::Corruption("prefix " + prefix_id + ": file " + path + " is missing");
    }
    return ErrnoStatus("prefix " + prefix_id + ": cannot open", path, errno);
  }
  out->fd = fd;
  struct stat st;
  if (::fstat(fd, &st) != 0)
    return ErrnoStatus("prefix " + prefix_id + ": cannot stat", path, errno);
  out->size = uint64_t(st.st_size);
  if (out->size != expected_size) {
    return Status::Corruption("prefix " + prefix_id + ": file " + path + " has " +
                              std::to_string(out->size) + " bytes, the manifest says " +
                              std::to_string(expected_size) +
                              (out->size < expected_size ? " (truncated)" : ""));
  }
  out->direct_fd = ::open(path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);  // -1 if refused
  return Status::OK();
}

}  // namespace

Result<std::unique_ptr<HandleState>> OpenHandleState(const Manifest& m,
                                                     const std::string& segments_dir,
                                                     std::string* bad_segment) {
  auto s = std::make_unique<HandleState>();
  s->manifest = m;
  s->info = EntryFromManifest(m).info;
  s->probe_heads = ProbeKvHeads(m.layout, m.shape);
  for (const SegmentRef& ref : m.segments) {
    HandleSegment hs{ref, SegmentGeometry(m.layout, m.shape, ref.stored_chunks), -1, -1, {}};
    const std::string base = segments_dir + "/" + ref.name;
    hs.kv_file = int(s->files.size());
    s->files.emplace_back();
    hs.sum_file = int(s->files.size());
    s->files.emplace_back();
    *bad_segment = ref.name;
    CKV_RETURN_IF_ERROR(OpenFile(base + ".kv", ref.kv_bytes, m.id, &s->files[size_t(hs.kv_file)]));
    CKV_RETURN_IF_ERROR(
        OpenFile(base + ".sum", ref.sum_bytes, m.id, &s->files[size_t(hs.sum_file)]));
    const StoreFile& kv = s->files[size_t(hs.kv_file)];
    std::vector<uint64_t> table(hs.geom.table_bytes() / 8);
    CKV_RETURN_IF_ERROR(
        PReadFull(kv.fd, table.data(), table.size() * 8, hs.geom.table_offset(), kv.path)
            .WithContext("prefix " + m.id));
    const uint64_t sum = Checksum(table.data(), table.size() * 8);
    if (sum != ref.table_checksum || table[0] != SegmentGeometry::kTableMagic ||
        table[1] != hs.geom.num_table_entries()) {
      return Status::Corruption("prefix " + m.id + ": file " + kv.path +
                                ": checksum table damaged (stored " + Hex64(ref.table_checksum) +
                                ", computed " + Hex64(sum) + ")");
    }
    hs.table.assign(table.begin() + 2, table.end());
    s->segs.push_back(std::move(hs));
  }
  bad_segment->clear();
  return s;
}

}  // namespace store_internal

using store_internal::Checksum;
using store_internal::ChecksumOfTwo;
using store_internal::HandleSegment;
using store_internal::HandleState;
using store_internal::Hex64;

namespace {

const char* PartName(KVPart part) {
  return part == KVPart::kK ? " K" : part == KVPart::kV ? " V" : "";
}

// Reports a failed check: quarantines the prefix (Corruption only) and returns the status.
Status Fail(const HandleState& s, const HandleSegment* seg, const Status& st) {
  if (st.code() == StatusCode::kCorruption) {
    if (auto store = s.store.lock()) {
      store->Quarantine(s.info.id, seg != nullptr ? seg->ref.name : "", st.message());
    }
  }
  return st;
}

}  // namespace

PrefixHandle::PrefixHandle(std::unique_ptr<HandleState> state) : s_(std::move(state)) {}
PrefixHandle::~PrefixHandle() = default;

const PrefixInfo& PrefixHandle::info() const {
  return s_->info;
}

int PrefixHandle::num_periods() const {
  return s_->segs.front().geom.num_periods();
}

std::pair<int, int> PrefixHandle::PeriodLayers(int period) const {
  if (layout().kind != LayoutKind::kContiguousPeriodMajor) return {period, period + 1};
  const int p = layout().period_layers;
  return {period * p, std::min(num_layers(), (period + 1) * p)};
}

std::span<const int32_t> PrefixHandle::tokens() const {
  return s_->manifest.tokens;
}

int64_t PrefixHandle::ChunkTokens(int64_t chunk) const {
  const int64_t c = chunk_tokens();
  return std::clamp<int64_t>(n_tokens() - chunk * c, 0, c);
}

const std::vector<int>& PrefixHandle::probe_kv_heads() const {
  return s_->probe_heads;
}

const std::vector<StoreFile>& PrefixHandle::files() const {
  return s_->files;
}

namespace {

Status CheckLocation(const PrefixHandle& h, int layer, int64_t chunk, KVPart part) {
  const bool impress = h.layout().kind == LayoutKind::kImpress;
  if (layer < 0 || layer >= h.num_layers() || chunk < 0 || chunk >= h.n_chunks() ||
      (impress ? part == KVPart::kKV : part != KVPart::kKV)) {
    return Status::OutOfRange("prefix " + h.id() + ": no extent layer " + std::to_string(layer) +
                              " chunk " + std::to_string(chunk) + PartName(part) + " in " +
                              h.layout().ToString() + " with " + std::to_string(h.num_layers()) +
                              " layers, " + std::to_string(h.n_chunks()) + " chunks");
  }
  return Status::OK();
}

}  // namespace

Result<ReadUnit> PrefixHandle::LocateUnit(int layer, int64_t chunk, KVPart part) const {
  CKV_RETURN_IF_ERROR(CheckLocation(*this, layer, chunk, part));
  const HandleSegment& seg = s_->segs[s_->SegmentOf(chunk)];
  const int64_t local = chunk - seg.ref.first_chunk;
  return ReadUnit{seg.kv_file, seg.geom.UnitOffset(layer, local, part), seg.geom.UnitLength(layer)};
}

Result<Extent> PrefixHandle::LocateExtent(int layer, int64_t chunk, KVPart part) const {
  CKV_RETURN_IF_ERROR(CheckLocation(*this, layer, chunk, part));
  const HandleSegment& seg = s_->segs[s_->SegmentOf(chunk)];
  const int64_t local = chunk - seg.ref.first_chunk;
  return Extent{seg.kv_file, seg.geom.ExtentOffset(layer, local, part),
                uint32_t(seg.geom.extent_bytes()),
                seg.table[seg.geom.ExtentIndex(layer, local, part)]};
}

std::vector<LayerBlock> PrefixHandle::SummaryBlocks(int layer) const {
  std::vector<LayerBlock> out;
  if (layer < 0 || layer >= num_layers()) return out;
  for (const HandleSegment& seg : s_->segs) {
    const uint64_t off = seg.geom.SummaryOffset(layer);
    const uint64_t len = seg.geom.summary_layer_bytes();
    out.push_back(
        {ReadUnit{seg.sum_file, off, uint32_t(store_internal::AlignUp(len))},
         Extent{seg.sum_file, off, uint32_t(len), seg.ref.summary_checksums[size_t(layer)]},
         seg.ref.first_chunk, seg.ref.used_chunks});
  }
  return out;
}

std::vector<LayerBlock> PrefixHandle::ProbeKeyBlocks(int layer) const {
  std::vector<LayerBlock> out;
  if (layer < 0 || layer >= num_layers() || layout().kind != LayoutKind::kImpress) return out;
  for (const HandleSegment& seg : s_->segs) {
    const uint64_t off = seg.geom.ProbeOffset(layer);
    const uint64_t len = seg.geom.probe_bytes();
    out.push_back({ReadUnit{seg.kv_file, off, uint32_t(store_internal::AlignUp(len))},
                   Extent{seg.kv_file, off, uint32_t(len), seg.table[seg.geom.ProbeIndex(layer)]},
                   seg.ref.first_chunk, seg.ref.used_chunks});
  }
  return out;
}

Status PrefixHandle::VerifyExtent(int layer, int64_t chunk, KVPart part, const void* bytes) const {
  CKV_ASSIGN_OR_RETURN(Extent e, LocateExtent(layer, chunk, part));
  return CheckExtent(e, layer, chunk, part, Checksum(bytes, e.length));
}

Status PrefixHandle::VerifyExtent(int layer, int64_t chunk, const void* k_half,
                                  const void* v_half) const {
  CKV_ASSIGN_OR_RETURN(Extent e, LocateExtent(layer, chunk, KVPart::kKV));
  const size_t half = e.length / 2;  // K [c][kv_dim] then V [c][kv_dim]
  return CheckExtent(e, layer, chunk, KVPart::kKV,
                     ChecksumOfTwo(k_half, half, v_half, e.length - half));
}

Status PrefixHandle::CheckExtent(const Extent& e, int layer, int64_t chunk, KVPart part,
                                 uint64_t actual) const {
  if (actual == e.checksum) return Status::OK();
  const HandleSegment& seg = s_->segs[s_->SegmentOf(chunk)];
  return Fail(
      *s_, &seg,
      Status::Corruption("prefix " + id() + ": file " + s_->files[size_t(e.file)].path +
                         ": layer " + std::to_string(layer) + " chunk " + std::to_string(chunk) +
                         PartName(part) + ": checksum mismatch (stored " + Hex64(e.checksum) +
                         ", computed " + Hex64(actual) + ")"));
}

Status PrefixHandle::VerifyBlock(const LayerBlock& block, int layer, const void* bytes) const {
  const uint64_t actual = Checksum(bytes, block.extent.length);
  if (actual == block.extent.checksum) return Status::OK();
  const HandleSegment* seg = nullptr;
  for (const HandleSegment& s : s_->segs) {
    if (s.kv_file == block.extent.file || s.sum_file == block.extent.file) seg = &s;
  }
  const std::string path = block.extent.file >= 0 && size_t(block.extent.file) < s_->files.size()
                               ? s_->files[size_t(block.extent.file)].path
                               : "?";
  return Fail(
      *s_, seg,
      Status::Corruption("prefix " + id() + ": file " + path + ": layer " + std::to_string(layer) +
                         " block of chunks " + std::to_string(block.first_chunk) + ".." +
                         std::to_string(block.first_chunk + block.n_chunks - 1) +
                         ": checksum mismatch (stored " + Hex64(block.extent.checksum) +
                         ", computed " + Hex64(actual) + ")"));
}

namespace {

// Reads an extent and verifies it.
Status ReadExtent(const PrefixHandle& h, const HandleState& s, int layer, int64_t chunk,
                  KVPart part, std::vector<unsigned char>* buf) {
  CKV_ASSIGN_OR_RETURN(Extent e, h.LocateExtent(layer, chunk, part));
  buf->resize(e.length);
  const StoreFile& f = s.files[size_t(e.file)];
  Status st = store_internal::PReadFull(f.fd, buf->data(), e.length, e.offset, f.path);
  if (!st.ok()) {
    return Fail(s, &s.segs[s.SegmentOf(chunk)],
                st.WithContext("prefix " + h.id() + ": layer " + std::to_string(layer) + " chunk " +
                               std::to_string(chunk) + PartName(part)));
  }
  return h.VerifyExtent(layer, chunk, part, buf->data());
}

Status ReadBlock(const PrefixHandle& h, const HandleState& s, const LayerBlock& b, int layer,
                 std::vector<unsigned char>* buf) {
  buf->resize(b.extent.length);
  const StoreFile& f = s.files[size_t(b.extent.file)];
  Status st =
      store_internal::PReadFull(f.fd, buf->data(), b.extent.length, b.extent.offset, f.path);
  if (!st.ok()) {
    const HandleSegment* seg = nullptr;
    for (const HandleSegment& x : s.segs) {
      if (x.kv_file == b.extent.file || x.sum_file == b.extent.file) seg = &x;
    }
    return Fail(s, seg, st.WithContext("prefix " + h.id() + ": layer " + std::to_string(layer)));
  }
  return h.VerifyBlock(b, layer, buf->data());
}

}  // namespace

Status PrefixHandle::ReadLayerChunk(int layer, int64_t chunk, uint16_t* k_out,
                                    uint16_t* v_out) const {
  const size_t half = size_t(chunk_tokens()) * size_t(kv_dim()) * 2;
  std::vector<unsigned char> buf;
  if (layout().kind == LayoutKind::kImpress) {
    CKV_RETURN_IF_ERROR(ReadExtent(*this, *s_, layer, chunk, KVPart::kK, &buf));
    std::memcpy(k_out, buf.data(), half);
    CKV_RETURN_IF_ERROR(ReadExtent(*this, *s_, layer, chunk, KVPart::kV, &buf));
    std::memcpy(v_out, buf.data(), half);
    return Status::OK();
  }
  CKV_RETURN_IF_ERROR(ReadExtent(*this, *s_, layer, chunk, KVPart::kKV, &buf));
  std::memcpy(k_out, buf.data(), half);
  std::memcpy(v_out, buf.data() + half, half);
  return Status::OK();
}

Status PrefixHandle::ReadLayer(int layer, uint16_t* k_out, uint16_t* v_out) const {
  const size_t row = size_t(kv_dim());
  const size_t c = size_t(chunk_tokens());
  std::vector<uint16_t> k(c * row), v(c * row);
  for (int64_t j = 0; j < n_chunks(); ++j) {
    CKV_RETURN_IF_ERROR(ReadLayerChunk(layer, j, k.data(), v.data()));
    const size_t n = size_t(ChunkTokens(j)) * row;
    std::memcpy(k_out + size_t(j) * c * row, k.data(), n * 2);
    std::memcpy(v_out + size_t(j) * c * row, v.data(), n * 2);
  }
  return Status::OK();
}

Result<std::vector<float>> PrefixHandle::ReadSummaries(int layer) const {
  if (layer < 0 || layer >= num_layers()) {
    return Status::OutOfRange("prefix " + id() + ": no layer " + std::to_string(layer));
  }
  const size_t per_chunk = 3 * size_t(kv_dim());
  std::vector<float> out(size_t(n_chunks()) * per_chunk);
  std::vector<unsigned char> buf;
  for (const LayerBlock& b : SummaryBlocks(layer)) {
    CKV_RETURN_IF_ERROR(ReadBlock(*this, *s_, b, layer, &buf));
    store_internal::DecodeBf16(reinterpret_cast<const uint16_t*>(buf.data()),
                               size_t(b.n_chunks) * per_chunk,
                               out.data() + size_t(b.first_chunk) * per_chunk);
  }
  return out;
}

Result<std::vector<uint16_t>> PrefixHandle::ReadProbeKeys(int layer) const {
  if (layout().kind != LayoutKind::kImpress || layer < 0 || layer >= num_layers()) {
    return Status::OutOfRange("prefix " + id() + ": no probe keys for layer " +
                              std::to_string(layer) + " in " + layout().ToString());
  }
  const size_t per_token = s_->probe_heads.size() * size_t(info().head_dim);
  std::vector<uint16_t> out(size_t(n_tokens()) * per_token);
  std::vector<unsigned char> buf;
  for (const LayerBlock& b : ProbeKeyBlocks(layer)) {
    CKV_RETURN_IF_ERROR(ReadBlock(*this, *s_, b, layer, &buf));
    const int64_t t0 = b.first_chunk * chunk_tokens();
    const int64_t nt = std::min(b.n_chunks * chunk_tokens(), n_tokens() - t0);
    std::memcpy(out.data() + size_t(t0) * per_token, buf.data(), size_t(nt) * per_token * 2);
  }
  return out;
}

Status PrefixHandle::VerifyAll() const {
  std::vector<unsigned char> buf;
  const bool impress = layout().kind == LayoutKind::kImpress;
  for (int l = 0; l < num_layers(); ++l) {
    for (int64_t j = 0; j < n_chunks(); ++j) {
      if (impress) {
        CKV_RETURN_IF_ERROR(ReadExtent(*this, *s_, l, j, KVPart::kK, &buf));
        CKV_RETURN_IF_ERROR(ReadExtent(*this, *s_, l, j, KVPart::kV, &buf));
      } else {
        CKV_RETURN_IF_ERROR(ReadExtent(*this, *s_, l, j, KVPart::kKV, &buf));
      }
    }
    for (const LayerBlock& b : SummaryBlocks(l))
      CKV_RETURN_IF_ERROR(ReadBlock(*this, *s_, b, l, &buf));
    for (const LayerBlock& b : ProbeKeyBlocks(l))
      CKV_RETURN_IF_ERROR(ReadBlock(*this, *s_, b, l, &buf));
  }
  return Status::OK();
}

}  // namespace ckv
