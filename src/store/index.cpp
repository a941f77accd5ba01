#include "store/index.h"

#include <algorithm>
#include <cstring>

#include "store/checksum.h"

namespace ckv::store_internal {
namespace {

constexpr char kMagic[8] = {'C', 'K', 'V', 'I', 'N', 'D', 'X', '1'};
constexpr uint64_t kChainSeed = 0x636b762d63686169ULL;  // "ckv-chai"

class Writer {
 public:
  void U64(uint64_t v) { Raw(&v, 8); }
  void I64(int64_t v) { Raw(&v, 8); }
  void I32(int32_t v) { Raw(&v, 4); }
  void Str(const std::string& s) {
    U64(s.size());
    Raw(s.data(), s.size());
  }
  void Raw(const void* p, size_t n) { out.append(static_cast<const char*>(p), n); }
  std::string out;
};

class Reader {
 public:
  Reader(const std::string& s, size_t end) : s_(s), end_(end) {}
  bool U64(uint64_t* v) { return Raw(v, 8); }
  bool I64(int64_t* v) { return Raw(v, 8); }
  bool I32(int32_t* v) { return Raw(v, 4); }
  bool Int(int* v) {
    int32_t x;
    if (!I32(&x)) return false;
    *v = x;
    return true;
  }
  bool Str(std::string* v) {
    uint64_t n;
    if (!U64(&n) || n > end_ - pos_) return false;
    v->assign(s_.data() + pos_, n);
    pos_ += n;
    return true;
  }
  bool Raw(void* p, size_t n) {
    if (n > end_ - pos_) return false;
    std::memcpy(p, s_.data() + pos_, n);
    pos_ += n;
    return true;
  }
  bool done() const { return pos_ == end_; }

 private:
  const std::string& s_;
  size_t end_;
  size_t pos_ = 0;
};

}  // namespace

std::vector<uint64_t> ChainHashes(uint64_t fingerprint, const StoreLayout& layout,
                                  std::span<const int32_t> tokens) {
  const StoreLayout l = layout.Normalized();
  const int64_t params[6] = {int64_t(kChainSeed), int64_t(fingerprint), int64_t(l.kind),
                             l.chunk_tokens,      l.period_layers,      l.probe_heads};
  const size_t c = size_t(l.chunk_tokens);
  std::vector<uint64_t> h;
  h.reserve(tokens.size() / c + 1);
  h.push_back(Checksum(params, sizeof params));
  for (size_t i = 0; i + c <= tokens.size(); i += c) {
    h.push_back(ChecksumWithSeed(tokens.data() + i, c * sizeof(int32_t), h.back()));
  }
  return h;
}

IndexEntry EntryFromManifest(const Manifest& m) {
  IndexEntry e;
  PrefixInfo& i = e.info;
  i.id = m.id;
  i.fingerprint = m.fingerprint;
  i.layout = m.layout;
  i.num_layers = m.shape.num_layers;
  i.num_heads = m.shape.num_heads;
  i.num_kv_heads = m.shape.num_kv_heads;
  i.head_dim = m.shape.head_dim;
  i.n_tokens = m.n_tokens();
  i.n_chunks = m.n_chunks();
  i.bytes = m.own_bytes();
  i.total_bytes = m.total_bytes();
  i.num_segments = int(m.segments.size());
  i.parent_id = m.parent_id;
  i.created_unix_ms = m.created_unix_ms;
  i.last_used_unix_ms = m.created_unix_ms;
  e.bucket = ChainHashes(m.fingerprint, m.layout, m.tokens).back();
  for (const SegmentRef& s : m.segments) e.segments.push_back({s.name, s.bytes()});
  return e;
}

void PrefixIndex::Ref(const IndexSegment& s) {
  SegState& st = segments_[s.name];
  if (st.refs++ == 0) {
    st.bytes = s.bytes;
    total_bytes_ += s.bytes;
  }
}

bool PrefixIndex::Unref(const std::string& name) {
  auto it = segments_.find(name);
  if (it == segments_.end()) return false;
  if (--it->second.refs > 0) return false;
  total_bytes_ -= it->second.bytes;
  segments_.erase(it);
  return true;
}

void PrefixIndex::Add(IndexEntry e) {
  for (const IndexSegment& s : e.segments) Ref(s);
  buckets_.emplace(e.bucket, e.info.id);
  std::string id = e.info.id;
  entries_.emplace(std::move(id), std::move(e));
}

std::vector<std::string> PrefixIndex::Erase(const std::string& id) {
  std::vector<std::string> freed;
  auto it = entries_.find(id);
  if (it == entries_.end()) return freed;
  auto [b, e] = buckets_.equal_range(it->second.bucket);
  for (; b != e; ++b) {
    if (b->second == id) {
      buckets_.erase(b);
      break;
    }
  }
  for (const IndexSegment& s : it->second.segments) {
    if (Unref(s.name)) freed.push_back(s.name);
  }
  entries_.erase(it);
  return freed;
}

const IndexEntry* PrefixIndex::Find(const std::string& id) const {
  auto it = entries_.find(id);
  return it == entries_.end() ? nullptr : &it->second;
}

IndexEntry* PrefixIndex::FindMutable(const std::string& id) {
  auto it = entries_.find(id);
  return it == entries_.end() ? nullptr : &it->second;
}

std::vector<const IndexEntry*> PrefixIndex::Bucket(uint64_t key) const {
  std::vector<const IndexEntry*> out;
  auto [b, e] = buckets_.equal_range(key);
  for (; b != e; ++b) {
    if (const IndexEntry* entry = Find(b->second)) out.push_back(entry);
  }
  return out;
}

void PrefixIndex::Pin(const std::vector<IndexSegment>& segments) {
  for (const IndexSegment& s : segments) Ref(s);
}

std::vector<std::string> PrefixIndex::Unpin(const std::vector<IndexSegment>& segments) {
  std::vector<std::string> freed;
  for (const IndexSegment& s : segments) {
    if (Unref(s.name)) freed.push_back(s.name);
  }
  return freed;
}

std::vector<std::string> PrefixIndex::IdsUsingSegment(const std::string& name) const {
  std::vector<std::string> ids;
  for (const auto& [id, e] : entries_) {
    for (const IndexSegment& s : e.segments) {
      if (s.name == name) {
        ids.push_back(id);
        break;
      }
    }
  }
  return ids;
}

const IndexEntry* PrefixIndex::LeastRecentlyUsed(const std::string& exclude) const {
  const IndexEntry* best = nullptr;
  for (const auto& [id, e] : entries_) {
    if (id == exclude) continue;
    if (best == nullptr || e.info.last_used_unix_ms < best->info.last_used_unix_ms ||
        (e.info.last_used_unix_ms == best->info.last_used_unix_ms && e.use_seq < best->use_seq)) {
      best = &e;
    }
  }
  return best;
}

uint64_t PrefixIndex::max_use_seq() const {
  uint64_t m = 0;
  for (const auto& [id, e] : entries_) m = std::max(m, e.use_seq);
  return m;
}

std::string PrefixIndex::Encode() const {
  Writer w;
  w.Raw(kMagic, 8);
  w.U64(entries_.size());
  for (const auto& [id, e] : entries_) {
    const PrefixInfo& i = e.info;
    w.Str(i.id);
    w.U64(i.fingerprint);
    w.I32(int32_t(i.layout.kind));
    w.I32(i.layout.chunk_tokens);
    w.I32(i.layout.period_layers);
    w.I32(i.layout.probe_heads);
    w.I32(i.num_layers);
    w.I32(i.num_heads);
    w.I32(i.num_kv_heads);
    w.I32(i.head_dim);
    w.I64(i.n_tokens);
    w.I64(i.n_chunks);
    w.I64(i.bytes);
    w.I64(i.total_bytes);
    w.Str(i.parent_id);
    w.I64(i.created_unix_ms);
    w.I64(i.last_used_unix_ms);
    w.U64(e.use_seq);
    w.U64(e.bucket);
    w.U64(e.segments.size());
    for (const IndexSegment& s : e.segments) {
      w.Str(s.name);
      w.I64(s.bytes);
    }
  }
  w.U64(Checksum(w.out.data(), w.out.size()));
  return std::move(w.out);
}

Result<PrefixIndex> PrefixIndex::Decode(const std::string& bytes, const std::string& path) {
  auto bad = [&](const std::string& what) {
    return Status::Corruption("index " + path + ": " + what);
  };
  if (bytes.size() < 24 || std::memcmp(bytes.data(), kMagic, 8) != 0) return bad("bad header");
  uint64_t stored;
  std::memcpy(&stored, bytes.data() + bytes.size() - 8, 8);
  if (Checksum(bytes.data(), bytes.size() - 8) != stored) return bad("checksum mismatch");
  Reader r(bytes, bytes.size() - 8);
  char magic[8];
  uint64_t count;
  if (!r.Raw(magic, 8) || !r.U64(&count)) return bad("bad header");
  PrefixIndex index;
  for (uint64_t k = 0; k < count; ++k) {
    IndexEntry e;
    PrefixInfo& i = e.info;
    int32_t kind;
    uint64_t nseg;
    if (!r.Str(&i.id) || !r.U64(&i.fingerprint) || !r.I32(&kind) ||
        !r.Int(&i.layout.chunk_tokens) || !r.Int(&i.layout.period_layers) ||
        !r.Int(&i.layout.probe_heads) || !r.Int(&i.num_layers) || !r.Int(&i.num_heads) ||
        !r.Int(&i.num_kv_heads) || !r.Int(&i.head_dim) || !r.I64(&i.n_tokens) ||
        !r.I64(&i.n_chunks) || !r.I64(&i.bytes) || !r.I64(&i.total_bytes) || !r.Str(&i.parent_id) ||
        !r.I64(&i.created_unix_ms) || !r.I64(&i.last_used_unix_ms) || !r.U64(&e.use_seq) ||
        !r.U64(&e.bucket) || !r.U64(&nseg) || nseg > bytes.size()) {
      return bad("truncated entry");
    }
    if (kind < 0 || kind > int32_t(LayoutKind::kImpress)) return bad("bad layout kind");
    i.layout.kind = LayoutKind(kind);
    for (uint64_t s = 0; s < nseg; ++s) {
      IndexSegment seg;
      if (!r.Str(&seg.name) || !r.I64(&seg.bytes)) return bad("truncated entry");
      e.segments.push_back(std::move(seg));
    }
    i.num_segments = int(e.segments.size());
    if (!IsHexId(i.id) || index.Find(i.id) != nullptr) return bad("bad or repeated id");
    index.Add(std::move(e));
  }
  if (!r.done()) return bad("trailing bytes");
  return index;
}

}  // namespace ckv::store_internal
