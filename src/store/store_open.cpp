// Opening a store: the directory lock, crash recovery (temporary files, unreferenced segments,
// manifests the index does not know), and the index file.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <unordered_set>

#include "store/store_core.h"

namespace ckv::store_internal {

Result<std::shared_ptr<StoreCore>> StoreCore::Open(const std::string& dir,
                                                   const StoreOptions& options) {
  if (dir.empty()) return Status::InvalidArgument("opening a prefix store: empty directory name");
  std::shared_ptr<StoreCore> core(new StoreCore(dir, options));
  CKV_RETURN_IF_ERROR(MakeDirs(core->dir_).WithContext("opening prefix store " + dir));
  for (const std::string& d : {core->manifests_dir_, core->segments_dir_, core->quarantine_dir_}) {
    CKV_RETURN_IF_ERROR(MakeDir(d).WithContext("opening prefix store " + dir));
  }
  const std::string lock_path = dir + "/LOCK";
  const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus("opening prefix store: cannot create", lock_path, errno);
  core->lock_fd_ = UniqueFd(fd);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return Status::IOError("prefix store " + dir + " is in use by another PrefixStore (" +
                             lock_path + " is locked)");
    }
    return ErrnoStatus("opening prefix store: cannot lock", lock_path, errno);
  }
  CKV_RETURN_IF_ERROR(core->Recover().WithContext("opening prefix store " + dir));
  return core;
}

Status StoreCore::Recover() {
  std::lock_guard<std::mutex> lock(mu_);
  // 1. Temporary files of writes that never got published.
  for (const std::string& d : {dir_, manifests_dir_, segments_dir_}) {
    CKV_ASSIGN_OR_RETURN(std::vector<std::string> names, ListDir(d));
    for (const std::string& n : names) {
      if (EndsWith(n, ".tmp")) ::unlink((d + "/" + n).c_str());
    }
  }

  // 2. The index file, if it verifies; otherwise start empty and rebuild from the manifests.
  const std::string index_path = dir_ + "/index";
  bool changed = false;
  if (Result<std::string> bytes = ReadWholeFile(index_path); bytes.ok()) {
    Result<PrefixIndex> idx = PrefixIndex::Decode(*bytes, index_path);
    if (idx.ok()) {
      index_ = std::move(*idx);
    } else {
      changed = true;
    }
  } else {
    changed = true;
  }

  // 3. Reconcile with the manifests on disk: they, not the index, say what exists.
  CKV_ASSIGN_OR_RETURN(std::vector<std::string> manifest_names, ListDir(manifests_dir_));
  std::unordered_set<std::string> present;
  present.reserve(manifest_names.size());
  for (const std::string& n : manifest_names) {
    if (!EndsWith(n, ".manifest")) continue;
    std::string id = n.substr(0, n.size() - 9);
    if (IsHexId(id)) present.insert(std::move(id));
  }
  std::vector<std::string> stale;
  for (const auto& [id, e] : index_.entries()) {
    if (present.count(id) == 0) stale.push_back(id);
  }
  for (const std::string& id : stale) {
    index_.Erase(id);  // its segments are deleted below if no one else uses them
    changed = true;
  }
  for (const std::string& id : present) {
    if (index_.Find(id) != nullptr) continue;
    changed = true;
    const std::string path = ManifestPath(id);
    Result<std::string> bytes = ReadWholeFile(path);
    if (!bytes.ok()) {
      if (bytes.status().code() == StatusCode::kNotFound) continue;
      return bytes.status();
    }
    Result<Manifest> m = DecodeManifest(*bytes, path);
    if (m.ok() && m->id != id)
      m = Status::Corruption("manifest " + path + " holds prefix " + m->id);
    if (!m.ok()) {
      QuarantineLocked(id, "", m.status().message());
      continue;
    }
    index_.Add(EntryFromManifest(*m));
  }

  // 4. Segment files: delete those no manifest references (a Put that died before publishing);
  // quarantine prefixes whose segment files are missing.
  CKV_ASSIGN_OR_RETURN(std::vector<std::string> seg_names, ListDir(segments_dir_));
  std::unordered_set<std::string> kv_files, sum_files;
  for (const std::string& n : seg_names) {
    const bool kv = EndsWith(n, ".kv");
    const bool sum = EndsWith(n, ".sum");
    if (!kv && !sum) continue;
    const std::string name = n.substr(0, n.size() - (kv ? 3 : 4));
    if (!index_.HasSegment(name)) {
      ::unlink((segments_dir_ + "/" + n).c_str());
      continue;
    }
    (kv ? kv_files : sum_files).insert(name);
  }
  std::vector<std::pair<std::string, std::string>> missing;  // (prefix, segment)
  for (const auto& [id, e] : index_.entries()) {
    for (const IndexSegment& s : e.segments) {
      if (kv_files.count(s.name) == 0 || sum_files.count(s.name) == 0) {
        missing.emplace_back(id, s.name);
        break;
      }
    }
  }
  for (const auto& [id, seg] : missing) {
    if (index_.Find(id) == nullptr) continue;
    QuarantineLocked(id, "", "segment " + segments_dir_ + "/" + seg + " is missing");
    changed = true;
  }
  use_seq_ = index_.max_use_seq();
  if (changed) {
    // The index is a cache: when it cannot be written now (disk full), the store still opens
    // and the next Flush or close tries again.
    index_dirty_ = true;
    (void)FlushLocked();
  }
  return Status::OK();
}

}  // namespace ckv::store_internal
