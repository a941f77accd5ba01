// The state behind a PrefixStore: directory, lock, index, and the operations on them. Handles
// keep a weak reference to report corruption (which quarantines the prefix).
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ckv/prefix_store.h"
#include "store/file_util.h"
#include "store/index.h"
#include "store/manifest.h"

namespace ckv::store_internal {

class StoreCore : public std::enable_shared_from_this<StoreCore> {
 public:
  // store_open.cpp: lock, crash recovery, index load / rebuild.
  static Result<std::shared_ptr<StoreCore>> Open(const std::string& dir,
                                                 const StoreOptions& options);
  ~StoreCore();

  Result<PrefixInfo> Put(uint64_t fingerprint, const ModelConfig& cfg, const StoreLayout& layout,
                         std::span<const int32_t> tokens, std::span<const KVLayerData> layers,
                         const std::function<void(double)>& progress);
  std::optional<PrefixInfo> FindLongestPrefix(uint64_t fingerprint, const StoreLayout& layout,
                                              std::span<const int32_t> tokens);
  std::vector<PrefixInfo> List() const;
  Result<PrefixInfo> Info(const std::string& id) const;
  Status Touch(const std::string& id);
  Status Remove(const std::string& id);
  Status Verify(const std::string& id);
  Result<std::shared_ptr<const PrefixHandle>> OpenPrefix(const std::string& id);
  int64_t total_bytes() const;
  size_t size() const;
  const std::string& dir() const { return dir_; }
  Status Flush();

  // Moves the prefix aside; with a `bad_segment`, every prefix using that segment too.
  void Quarantine(const std::string& id, const std::string& bad_segment, const std::string& reason);

 private:
  StoreCore(std::string dir, StoreOptions options);
  Status Recover();  // store_open.cpp

  std::string ManifestPath(const std::string& id) const;
  std::string SegmentPath(const std::string& name, const char* ext) const;
  // Reads and verifies a manifest; quarantines it when it fails to verify.
  Result<Manifest> LoadManifest(const std::string& id);
  // Lock held: drops the entry, deletes its manifest and the segments no one else uses.
  // Removes the manifest (the commit point), then the segments no prefix uses any more; when the
  // manifest cannot be removed nothing changes and the error says so.
  Status RemoveLocked(const std::string& id);
  // unlink / rename through the fault-injection hook; 0 or the errno.
  int UnlinkFile(const std::string& path) const;
  int RenameFile(const std::string& from, const std::string& to) const;
  void QuarantineLocked(const std::string& id, const std::string& bad_segment,
                        const std::string& reason);
  void DeleteSegmentFiles(const std::vector<std::string>& names);
  void TouchLocked(IndexEntry* e);
  Status FlushLocked();
  // Lock held: evicts LRU prefixes until `bytes` more fit; NoSpace when they cannot.
  Status MakeRoomLocked(int64_t bytes, const std::string& keep_id);
  // The part of Put after the parent is chosen.
  Result<PrefixInfo> PutWithParent(uint64_t fingerprint, const ModelShape& shape,
                                   const StoreLayout& layout, std::span<const int32_t> tokens,
                                   std::span<const KVLayerData> layers,
                                   const std::function<void(double)>& progress,
                                   const std::optional<Manifest>& parent, bool* parent_vanished);

  const std::string dir_;
  const std::string manifests_dir_;
  const std::string segments_dir_;
  const std::string quarantine_dir_;
  const StoreOptions options_;
  UniqueFd lock_fd_;

  mutable std::mutex mu_;
  PrefixIndex index_;
  int64_t reserved_bytes_ = 0;  // bytes of segments being written by in-flight Puts
  uint64_t use_seq_ = 0;        // orders uses within the same millisecond
  bool index_dirty_ = false;
};

}  // namespace ckv::store_internal
