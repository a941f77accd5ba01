#include "store/writer.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "store/checksum.h"
#include "store/summaries.h"

namespace ckv::store_internal {
namespace {

// Appends to a TmpFile through a buffer that is flushed only between appends, so each appended
// range can be checksummed in memory right after it is added.
class BufferedOut {
 public:
  BufferedOut(TmpFile* file, uint64_t total_bytes, uint64_t progress_base, uint64_t progress_total,
              const std::function<void(double)>* progress)
      : file_(file),
        progress_base_(progress_base),
        progress_total_(progress_total),
        progress_(progress) {
    buf_.reserve(size_t(std::min<uint64_t>(total_bytes, kCapacity)));
  }

  // Makes room for n more bytes (flushing first if they would not fit).
  Status Reserve(size_t n) {
    if (!buf_.empty() && buf_.size() + n > kCapacity) return Flush();
    return Status::OK();
  }
  // Appends n bytes (a copy of src, or zeros when src is null); returns where they start.
  unsigned char* Append(const void* src, size_t n) {
    const size_t at = buf_.size();
    buf_.resize(at + n);
    if (src != nullptr) {
      std::memcpy(buf_.data() + at, src, n);
    } else {
      std::memset(buf_.data() + at, 0, n);
    }
    return buf_.data() + at;
  }
  void PadTo4K() { Append(nullptr, size_t(AlignUp(position()) - position())); }
  uint64_t position() const { return file_->bytes_written() + buf_.size(); }
  unsigned char* data_at(uint64_t file_pos) {
    return buf_.data() + (file_pos - file_->bytes_written());
  }

  Status Flush() {
    if (buf_.empty()) return Status::OK();
    CKV_RETURN_IF_ERROR(file_->Write(buf_.data(), buf_.size()));
    buf_.clear();
    if (progress_ != nullptr && *progress_ && progress_total_ > 0) {
      (*progress_)(double(progress_base_ + file_->bytes_written()) / double(progress_total_));
    }
    return Status::OK();
  }

 private:
  static constexpr size_t kCapacity = size_t{4} << 20;
  TmpFile* file_;
  uint64_t progress_base_;
  uint64_t progress_total_;
  const std::function<void(double)>* progress_;
  std::vector<unsigned char> buf_;
};

class SegmentWriter {
 public:
  explicit SegmentWriter(const SegmentWriteRequest& req)
      : req_(req),
        c_(req.layout.chunk_tokens),
        kv_dim_(req.shape.kv_dim()),
        n_chunks_((req.n_tokens + c_ - 1) / c_ - req.first_chunk),
        g_(req.layout, req.shape, n_chunks_),
        table_(g_.num_table_entries(), 0) {}

  Result<SegmentRef> Run() {
    const std::string base = req_.segments_dir + "/" + req_.name;
    TmpFile kv(base + ".kv", req_.sync, req_.fault);
    TmpFile sum(base + ".sum", req_.sync, req_.fault);
    const uint64_t total = g_.kv_file_bytes() + g_.sum_file_bytes();
    CKV_RETURN_IF_ERROR(kv.Create());
    {
      BufferedOut out(&kv, g_.kv_file_bytes(), 0, total, req_.progress);
      CKV_RETURN_IF_ERROR(WriteKv(out));
      CKV_RETURN_IF_ERROR(out.Flush());
    }
    if (kv.bytes_written() != g_.kv_file_bytes()) {
      return Status::Internal("segment " + kv.final_path() + ": wrote " +
                              std::to_string(kv.bytes_written()) + " bytes, layout says " +
                              std::to_string(g_.kv_file_bytes()));
    }
    CKV_RETURN_IF_ERROR(sum.Create());
    std::vector<uint64_t> sum_checksums;
    {
      BufferedOut out(&sum, g_.sum_file_bytes(), g_.kv_file_bytes(), total, req_.progress);
      CKV_RETURN_IF_ERROR(WriteSummaries(out, &sum_checksums));
      CKV_RETURN_IF_ERROR(out.Flush());
    }
    CKV_RETURN_IF_ERROR(kv.Publish());
    Status st = sum.Publish();
    if (!st.ok()) {
      ::unlink(kv.final_path().c_str());
      return st;
    }
    SegmentRef ref;
    ref.name = req_.name;
    ref.first_chunk = req_.first_chunk;
    ref.stored_chunks = n_chunks_;
    ref.stored_tokens = req_.n_tokens - req_.first_chunk * c_;
    ref.used_chunks = n_chunks_;
    ref.own = true;
    ref.kv_bytes = g_.kv_file_bytes();
    ref.sum_bytes = g_.sum_file_bytes();
    ref.table_checksum = table_checksum_;
    ref.summary_checksums = std::move(sum_checksums);
    return ref;
  }

 private:
  // Real tokens of local chunk j.
  int64_t RealTokens(int64_t j) const {
    return std::min<int64_t>(c_, req_.n_tokens - (req_.first_chunk + j) * c_);
  }
  const uint16_t* Rows(int layer, int64_t j, bool v) const {
    const KVLayerData& d = req_.layers[size_t(layer)];
    return (v ? d.v : d.k) + (req_.first_chunk + j) * c_ * kv_dim_;
  }
  // c rows of K or V of (layer, j), zero-padded past the real tokens.
  void AppendHalf(BufferedOut& out, int layer, int64_t j, bool v) {
    const size_t real = size_t(RealTokens(j)) * size_t(kv_dim_) * 2;
    out.Append(Rows(layer, j, v), real);
    out.Append(nullptr, size_t(g_.half_bytes()) - real);
  }
  Status CheckAt(BufferedOut& out, uint64_t expected) {
    if (out.position() != expected) {
      return Status::Internal("segment " + req_.name + ": layout offset mismatch at " +
                              std::to_string(out.position()));
    }
    return Status::OK();
  }

  Status WriteKv(BufferedOut& out) {
    const int L = req_.shape.num_layers;
    const uint64_t E = g_.extent_bytes();
    auto unit_start = [&](int layer, int64_t j, KVPart part) -> Status {
      CKV_RETURN_IF_ERROR(out.Reserve(g_.UnitLength(layer)));
      return CheckAt(out, g_.UnitOffset(layer, j, part));
    };
    auto extent = [&](int layer, int64_t j, KVPart part) {
      const uint64_t at = out.position();
      if (part != KVPart::kV) AppendHalf(out, layer, j, false);
      if (part != KVPart::kK) AppendHalf(out, layer, j, true);
      table_[g_.ExtentIndex(layer, j, part)] = Checksum(out.data_at(at), size_t(E));
    };
    switch (req_.layout.kind) {
      case LayoutKind::kContiguousPeriodMajor:
        for (int q = 0; q < g_.num_periods(); ++q) {
          const int l0 = q * req_.layout.period_layers;
          const int l1 = std::min(L, l0 + req_.layout.period_layers);
          for (int64_t j = 0; j < n_chunks_; ++j) {
            CKV_RETURN_IF_ERROR(unit_start(l0, j, KVPart::kKV));
            for (int l = l0; l < l1; ++l) extent(l, j, KVPart::kKV);
            out.PadTo4K();
          }
        }
        break;
      case LayoutKind::kContiguousLayerMajor:
        for (int l = 0; l < L; ++l) {
          for (int64_t j = 0; j < n_chunks_; ++j) {
            CKV_RETURN_IF_ERROR(unit_start(l, j, KVPart::kKV));
            extent(l, j, KVPart::kKV);
            out.PadTo4K();
          }
        }
        break;
      case LayoutKind::kImpress:
        for (int l = 0; l < L; ++l) {
          for (int64_t j = 0; j < n_chunks_; ++j) {
            for (KVPart part : {KVPart::kK, KVPart::kV}) {
              CKV_RETURN_IF_ERROR(unit_start(l, j, part));
              extent(l, j, part);
              out.PadTo4K();
            }
          }
        }
        CKV_RETURN_IF_ERROR(WriteProbeKeys(out));
        break;
    }
    CKV_RETURN_IF_ERROR(CheckAt(out, g_.table_offset()));
    std::vector<uint64_t> table;
    table.reserve(table_.size() + 2);
    table.push_back(SegmentGeometry::kTableMagic);
    table.push_back(table_.size());
    table.insert(table.end(), table_.begin(), table_.end());
    const size_t table_bytes = table.size() * 8;
    table_checksum_ = Checksum(table.data(), table_bytes);
    CKV_RETURN_IF_ERROR(out.Reserve(table_bytes));
    out.Append(table.data(), table_bytes);
    return Status::OK();
  }

  Status WriteProbeKeys(BufferedOut& out) {
    const std::vector<int> heads = ProbeKvHeads(req_.layout, req_.shape);
    const size_t hd = size_t(req_.shape.head_dim);
    const int64_t tokens = n_chunks_ * c_;
    const int64_t real = req_.n_tokens - req_.first_chunk * c_;
    for (int l = 0; l < req_.shape.num_layers; ++l) {
      CKV_RETURN_IF_ERROR(out.Reserve(size_t(AlignUp(g_.probe_bytes()))));
      CKV_RETURN_IF_ERROR(CheckAt(out, g_.ProbeOffset(l)));
      const uint64_t at = out.position();
      const uint16_t* k = Rows(l, 0, false);
      for (int64_t t = 0; t < tokens; ++t) {
        for (int h : heads) {
          out.Append(t < real ? k + t * kv_dim_ + size_t(h) * hd : nullptr, hd * 2);
        }
      }
      table_[g_.ProbeIndex(l)] = Checksum(out.data_at(at), size_t(g_.probe_bytes()));
      out.PadTo4K();
    }
    return Status::OK();
  }

  Status WriteSummaries(BufferedOut& out, std::vector<uint64_t>* checksums) {
    const size_t chunk_bytes = size_t(g_.summary_chunk_bytes());
    for (int l = 0; l < req_.shape.num_layers; ++l) {
      CKV_RETURN_IF_ERROR(out.Reserve(size_t(AlignUp(g_.summary_layer_bytes()))));
      CKV_RETURN_IF_ERROR(CheckAt(out, g_.SummaryOffset(l)));
      const uint64_t at = out.position();
      for (int64_t j = 0; j < n_chunks_; ++j) {
        auto* dst = reinterpret_cast<uint16_t*>(out.Append(nullptr, chunk_bytes));
        SummarizeChunk(Rows(l, j, false), RealTokens(j), kv_dim_, dst);
      }
      checksums->push_back(Checksum(out.data_at(at), size_t(g_.summary_layer_bytes())));
      out.PadTo4K();
    }
    return Status::OK();
  }

  const SegmentWriteRequest& req_;
  const int64_t c_;
  const int kv_dim_;
  const int64_t n_chunks_;
  const SegmentGeometry g_;
  std::vector<uint64_t> table_;
  uint64_t table_checksum_ = 0;
};

}  // namespace

int64_t SegmentBytes(const StoreLayout& layout, const ModelShape& shape, int64_t n_chunks) {
  const SegmentGeometry g(layout, shape, n_chunks);
  return int64_t(g.kv_file_bytes() + g.sum_file_bytes());
}

Result<SegmentRef> WriteSegment(const SegmentWriteRequest& req) {
  return SegmentWriter(req).Run();
}

}  // namespace ckv::store_internal
