// PrefixStore operations: Put (with multi-turn sharing and LRU eviction), longest-prefix lookup,
// removal, quarantine, opening prefixes for reading.
#include "store/store_core.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "store/handle_state.h"
#include "store/writer.h"

namespace ckv::store_internal {

StoreCore::StoreCore(std::string dir, StoreOptions options)
    : dir_(std::move(dir)),
      manifests_dir_(dir_ + "/manifests"),
      segments_dir_(dir_ + "/segments"),
      quarantine_dir_(dir_ + "/quarantine"),
      options_(std::move(options)) {}

StoreCore::~StoreCore() {
  std::lock_guard<std::mutex> lock(mu_);
  if (index_dirty_) (void)FlushLocked();
}

std::string StoreCore::ManifestPath(const std::string& id) const {
  return manifests_dir_ + "/" + id + ".manifest";
}

std::string StoreCore::SegmentPath(const std::string& name, const char* ext) const {
  return segments_dir_ + "/" + name + ext;
}

Result<Manifest> StoreCore::LoadManifest(const std::string& id) {
  const std::string path = ManifestPath(id);
  Result<std::string> bytes = ReadWholeFile(path);
  if (!bytes.ok()) {
    if (bytes.status().code() == StatusCode::kNotFound) {
      std::lock_guard<std::mutex> lock(mu_);
      if (index_.Find(id) != nullptr) {
        // Listed but its manifest is gone: not a prefix any more.
        QuarantineLocked(id, "", "manifest " + path + " is missing");
      }
      return Status::NotFound("prefix " + id + ": no manifest " + path);
    }
    return bytes.status().WithContext("prefix " + id);
  }
  Result<Manifest> m = DecodeManifest(*bytes, path);
  if (m.ok() && m->id != id) {
    m = Status::Corruption("manifest " + path + " holds prefix " + m->id);
  }
  if (!m.ok()) {
    Quarantine(id, "", m.status().message());
    return m.status().WithContext("prefix " + id);
  }
  return m;
}

void StoreCore::DeleteSegmentFiles(const std::vector<std::string>& names) {
  for (const std::string& n : names) {
    ::unlink(SegmentPath(n, ".kv").c_str());
    ::unlink(SegmentPath(n, ".sum").c_str());
  }
}

int StoreCore::UnlinkFile(const std::string& path) const {
  if (options_.fault_injection) {
    if (const int err = options_.fault_injection(path); err != 0) return err;
  }
  return ::unlink(path.c_str()) == 0 ? 0 : errno;
}

int StoreCore::RenameFile(const std::string& from, const std::string& to) const {
  if (options_.fault_injection) {
    if (const int err = options_.fault_injection(from); err != 0) return err;
  }
  return ::rename(from.c_str(), to.c_str()) == 0 ? 0 : errno;
}

Status StoreCore::RemoveLocked(const std::string& id) {
  // The manifest's removal is the commit point: until it is gone, the segments it names stay.
  const std::string manifest = ManifestPath(id);
  if (const int err = UnlinkFile(manifest); err != 0 && err != ENOENT) {
    return Status::IOError("store " + dir_ + ": cannot remove " + manifest + ": " +
                           std::strerror(err) + " (prefix " + id + " kept)");
  }
  if (options_.sync) (void)SyncDir(manifests_dir_);
  DeleteSegmentFiles(index_.Erase(id));
  index_dirty_ = true;
  return Status::OK();
}

void StoreCore::Quarantine(const std::string& id, const std::string& bad_segment,
                           const std::string& reason) {
  std::lock_guard<std::mutex> lock(mu_);
  QuarantineLocked(id, bad_segment, reason);
}

void StoreCore::QuarantineLocked(const std::string& id, const std::string& bad_segment,
                                 const std::string& reason) {
  std::vector<std::string> ids = {id};
  if (!bad_segment.empty()) {
    for (const std::string& other : index_.IdsUsingSegment(bad_segment)) {
      if (other != id) ids.push_back(other);
    }
  }
  for (const std::string& victim : ids) {
    const std::string dest = quarantine_dir_ + "/" + victim + ".manifest";
    // A manifest that can be neither moved aside nor deleted keeps its segments where they
    // are (the prefix leaves the index now; the next Open verifies it again), so no manifest
    // ever names a segment that was moved away.
    const int moved = RenameFile(ManifestPath(victim), dest);
    const bool manifest_gone =
        moved == 0 || moved == ENOENT || UnlinkFile(ManifestPath(victim)) == 0;
    if (FILE* f = std::fopen((quarantine_dir_ + "/" + victim + ".reason").c_str(), "w")) {
      std::fprintf(
          f, "%s\n",
          (victim == id ? reason : "shares a damaged segment with prefix " + id + ": " + reason)
              .c_str());
      std::fclose(f);
    }
    // Segments no remaining prefix uses go to quarantine too (evidence), not deleted.
    for (const std::string& seg : index_.Erase(victim)) {
      if (!manifest_gone) continue;
      for (const char* ext : {".kv", ".sum"}) {
        (void)RenameFile(SegmentPath(seg, ext), quarantine_dir_ + "/" + seg + ext);
      }
    }
  }
  if (options_.sync) {
    (void)SyncDir(manifests_dir_);
    (void)SyncDir(quarantine_dir_);
  }
  index_dirty_ = true;
}

void StoreCore::TouchLocked(IndexEntry* e) {
  e->info.last_used_unix_ms = std::max(e->info.last_used_unix_ms, NowUnixMs());
  e->use_seq = ++use_seq_;
  index_dirty_ = true;
}

Status StoreCore::MakeRoomLocked(int64_t bytes, const std::string& keep_id) {
  if (options_.max_bytes <= 0) return Status::OK();
  if (bytes > options_.max_bytes) {
    return Status::NoSpace("store " + dir_ + ": a prefix of " + std::to_string(bytes) +
                           " bytes exceeds max_bytes " + std::to_string(options_.max_bytes));
  }
  const auto fits = [&](const PrefixIndex& ix) {
    return ix.total_bytes() + reserved_bytes_ + bytes <= options_.max_bytes;
  };
  if (fits(index_)) return Status::OK();
  // Plan on a copy first: a prefix that cannot fit even with every evictable prefix gone (some
  // are being written, or are the parent being extended) fails before anything is evicted.
  PrefixIndex plan = index_;
  std::vector<std::string> victims;
  while (!fits(plan)) {
    const IndexEntry* lru = plan.LeastRecentlyUsed(keep_id);
    if (lru == nullptr) {
      return Status::NoSpace("store " + dir_ + ": a prefix of " + std::to_string(bytes) +
                             " bytes does not fit in max_bytes " +
                             std::to_string(options_.max_bytes) + " (" +
                             std::to_string(index_.total_bytes() + reserved_bytes_) +
                             " bytes in use or being written; nothing evicted)");
    }
    victims.push_back(lru->info.id);
    (void)plan.Erase(victims.back());
  }
  for (const std::string& id : victims) CKV_RETURN_IF_ERROR(RemoveLocked(id));
  return Status::OK();
}

Result<PrefixInfo> StoreCore::Put(uint64_t fingerprint, const ModelConfig& cfg,
                                  const StoreLayout& layout_in, std::span<const int32_t> tokens,
                                  std::span<const KVLayerData> layers,
                                  const std::function<void(double)>& progress) {
  const StoreLayout layout = layout_in.Normalized();
  const ModelShape shape = ModelShape::From(cfg);
  CKV_RETURN_IF_ERROR(ValidateLayout(layout_in, shape).WithContext("storing a prefix"));
  if (tokens.empty()) return Status::InvalidArgument("storing a prefix: no tokens");
  if (layers.size() != size_t(shape.num_layers)) {
    return Status::InvalidArgument("storing a prefix: " + std::to_string(layers.size()) +
                                   " layers of KV given, the model has " +
                                   std::to_string(shape.num_layers));
  }
  for (size_t l = 0; l < layers.size(); ++l) {
    if (layers[l].k == nullptr || layers[l].v == nullptr) {
      return Status::InvalidArgument("storing a prefix: layer " + std::to_string(l) +
                                     " has no K or V");
    }
  }
  for (int attempt = 0;; ++attempt) {
    std::optional<Manifest> parent;
    if (std::optional<PrefixInfo> found = FindLongestPrefix(fingerprint, layout, tokens)) {
      const bool same_shape =
          found->num_layers == shape.num_layers && found->num_heads == shape.num_heads &&
          found->num_kv_heads == shape.num_kv_heads && found->head_dim == shape.head_dim;
      if (same_shape && found->n_tokens == int64_t(tokens.size())) return *found;
      if (same_shape && found->n_tokens >= layout.chunk_tokens && attempt == 0) {
        Result<Manifest> m = LoadManifest(found->id);
        if (m.ok()) parent = std::move(*m);
      }
    }
    bool parent_vanished = false;
    Result<PrefixInfo> r = PutWithParent(fingerprint, shape, layout, tokens, layers, progress,
                                         parent, &parent_vanished);
    if (!parent_vanished) return r;
    // The parent was removed between lookup and pinning: store without sharing.
  }
}

Result<PrefixInfo> StoreCore::PutWithParent(uint64_t fingerprint, const ModelShape& shape,
                                            const StoreLayout& layout,
                                            std::span<const int32_t> tokens,
                                            std::span<const KVLayerData> layers,
                                            const std::function<void(double)>& progress,
                                            const std::optional<Manifest>& parent,
                                            bool* parent_vanished) {
  const int64_t c = layout.chunk_tokens;
  const int64_t n = int64_t(tokens.size());
  const int64_t m_chunks = (n + c - 1) / c;

  // The parent's full chunks are shared; its partial last chunk (if any) is rewritten.
  std::vector<SegmentRef> inherited;
  std::vector<IndexSegment> pins;
  int64_t first_chunk = 0;
  if (parent) {
    first_chunk = parent->n_tokens() / c;
    for (const SegmentRef& s : parent->segments) {
      if (s.first_chunk >= first_chunk) break;
      SegmentRef r = s;
      r.used_chunks = std::min(s.used_chunks, first_chunk - s.first_chunk);
      r.own = false;
      inherited.push_back(r);
      pins.push_back({s.name, s.bytes()});
    }
  }
  const int64_t bytes = SegmentBytes(layout, shape, m_chunks - first_chunk);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (parent) {
      if (index_.Find(parent->id) == nullptr) {
        *parent_vanished = true;
        return Status::NotFound("parent " + parent->id + " removed");
      }
      index_.Pin(pins);
    }
    Status room = MakeRoomLocked(bytes, parent ? parent->id : "");
    if (!room.ok()) {
      DeleteSegmentFiles(index_.Unpin(pins));
      return room;
    }
    reserved_bytes_ += bytes;
  }
  // Undoes the reservation and pins when the Put fails after this point.
  auto abandon = [&](const Status& st, const std::vector<std::string>& written) -> Status {
    DeleteSegmentFiles(written);
    std::lock_guard<std::mutex> lock(mu_);
    reserved_bytes_ -= bytes;
    DeleteSegmentFiles(index_.Unpin(pins));
    return st;
  };

  SegmentWriteRequest req;
  req.layout = layout;
  req.shape = shape;
  req.layers = layers;
  req.n_tokens = n;
  req.first_chunk = first_chunk;
  req.segments_dir = segments_dir_;
  req.name = RandomHexId();
  req.sync = options_.sync;
  req.fault = &options_.fault_injection;
  req.progress = &progress;
  Result<SegmentRef> seg = WriteSegment(req);
  if (!seg.ok()) return abandon(seg.status().WithContext("storing a prefix"), {});
  if (options_.sync) {
    Status st = SyncDir(segments_dir_);
    if (!st.ok()) return abandon(st, {seg->name});
  }

  Manifest man;
  man.id = RandomHexId();
  man.fingerprint = fingerprint;
  man.layout = layout;
  man.shape = shape;
  man.tokens.assign(tokens.begin(), tokens.end());
  man.parent_id = parent ? parent->id : "";
  man.created_unix_ms = NowUnixMs();
  man.segments = std::move(inherited);
  man.segments.push_back(*seg);
  const std::string text = EncodeManifest(man);
  const std::string path = ManifestPath(man.id);
  Status st =
      WriteFileAtomic(path, text.data(), text.size(), options_.sync, &options_.fault_injection);
  if (st.ok() && options_.sync) {
    st = SyncDir(manifests_dir_);
    if (!st.ok()) ::unlink(path.c_str());
  }
  if (!st.ok()) return abandon(st.WithContext("storing prefix " + man.id), {seg->name});

  std::lock_guard<std::mutex> lock(mu_);
  IndexEntry e = EntryFromManifest(man);
  e.use_seq = ++use_seq_;
  PrefixInfo info = e.info;
  index_.Add(std::move(e));
  index_.Unpin(pins);  // the entry holds its own references now
  reserved_bytes_ -= bytes;
  index_dirty_ = true;
  if (progress) progress(1.0);
  return info;
}

std::optional<PrefixInfo> StoreCore::FindLongestPrefix(uint64_t fingerprint,
                                                       const StoreLayout& layout_in,
                                                       std::span<const int32_t> tokens) {
  const StoreLayout layout = layout_in.Normalized();
  if (layout.chunk_tokens < 1) return std::nullopt;
  const std::vector<uint64_t> h = ChainHashes(fingerprint, layout, tokens);
  const int64_t c = layout.chunk_tokens;
  std::vector<std::pair<int64_t, std::string>> candidates;  // (n_tokens, id), longest first
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = h.size(); i-- > 0;) {
      const size_t first = candidates.size();
      for (const IndexEntry* e : index_.Bucket(h[i])) {
        const PrefixInfo& p = e->info;
        if (p.fingerprint == fingerprint && p.layout == layout &&
            p.n_tokens <= int64_t(tokens.size()) && p.n_tokens / c == int64_t(i)) {
          candidates.emplace_back(p.n_tokens, p.id);
        }
      }
      std::sort(candidates.begin() + long(first), candidates.end(), std::greater<>());
    }
  }
  for (const auto& [n, id] : candidates) {
    Result<Manifest> m = LoadManifest(id);
    if (!m.ok()) continue;  // removed meanwhile, or quarantined now
    if (m->fingerprint != fingerprint || !(m->layout == layout) ||
        m->tokens.size() > tokens.size() ||
        !std::equal(m->tokens.begin(), m->tokens.end(), tokens.begin())) {
      continue;  // a hash collision
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (IndexEntry* e = index_.FindMutable(id)) {
      TouchLocked(e);
      return e->info;
    }
  }
  return std::nullopt;
}

std::vector<PrefixInfo> StoreCore::List() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<PrefixInfo> out;
  out.reserve(index_.size());
  for (const auto& [id, e] : index_.entries()) out.push_back(e.info);
  return out;
}

Result<PrefixInfo> StoreCore::Info(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (const IndexEntry* e = index_.Find(id)) return e->info;
  return Status::NotFound("store " + dir_ + ": no prefix " + id);
}

Status StoreCore::Touch(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  IndexEntry* e = index_.FindMutable(id);
  if (e == nullptr) return Status::NotFound("store " + dir_ + ": no prefix " + id);
  TouchLocked(e);
  return Status::OK();
}

Status StoreCore::Remove(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (index_.Find(id) == nullptr) return Status::NotFound("store " + dir_ + ": no prefix " + id);
  return RemoveLocked(id);
}

Result<std::shared_ptr<const PrefixHandle>> StoreCore::OpenPrefix(const std::string& id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (index_.Find(id) == nullptr) return Status::NotFound("store " + dir_ + ": no prefix " + id);
  }
  CKV_ASSIGN_OR_RETURN(Manifest m, LoadManifest(id));
  std::string bad_segment;
  Result<std::unique_ptr<HandleState>> state = OpenHandleState(m, segments_dir_, &bad_segment);
  if (!state.ok()) {
    if (state.status().code() == StatusCode::kCorruption) {
      Quarantine(id, bad_segment, state.status().message());
    }
    return state.status();
  }
  (*state)->store = weak_from_this();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (IndexEntry* e = index_.FindMutable(id)) {
      TouchLocked(e);
      (*state)->info.last_used_unix_ms = e->info.last_used_unix_ms;
    }
  }
  return std::shared_ptr<const PrefixHandle>(
      std::make_shared<PrefixHandle>(std::move(state).value()));
}

Status StoreCore::Verify(const std::string& id) {
  CKV_ASSIGN_OR_RETURN(std::shared_ptr<const PrefixHandle> h, OpenPrefix(id));
  return h->VerifyAll();
}

int64_t StoreCore::total_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return index_.total_bytes();
}

size_t StoreCore::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return index_.size();
}

Status StoreCore::Flush() {
  std::lock_guard<std::mutex> lock(mu_);
  return FlushLocked();
}

Status StoreCore::FlushLocked() {
  const std::string text = index_.Encode();
  CKV_RETURN_IF_ERROR(WriteFileAtomic(dir_ + "/index", text.data(), text.size(), options_.sync,
                                      &options_.fault_injection));
  if (options_.sync) CKV_RETURN_IF_ERROR(SyncDir(dir_));
  index_dirty_ = false;
  return Status::OK();
}

}  // namespace ckv::store_internal
