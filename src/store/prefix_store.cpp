// PrefixStore: the public face of StoreCore.
#include "ckv/prefix_store.h"

#include "store/store_core.h"

namespace ckv {

PrefixStore::PrefixStore(std::shared_ptr<store_internal::StoreCore> core)
    : core_(std::move(core)) {}
PrefixStore::~PrefixStore() = default;

Result<std::unique_ptr<PrefixStore>> PrefixStore::Open(const std::string& dir,
                                                       const StoreOptions& options) {
  CKV_ASSIGN_OR_RETURN(auto core, store_internal::StoreCore::Open(dir, options));
  return std::unique_ptr<PrefixStore>(new PrefixStore(std::move(core)));
}

Result<PrefixInfo> PrefixStore::Put(uint64_t fingerprint, const ModelConfig& cfg,
                                    const StoreLayout& layout, std::span<const int32_t> tokens,
                                    std::span<const KVLayerData> layers,
                                    const std::function<void(double)>& progress) {
  return core_->Put(fingerprint, cfg, layout, tokens, layers, progress);
}

std::optional<PrefixInfo> PrefixStore::FindLongestPrefix(uint64_t fingerprint,
                                                         const StoreLayout& layout,
                                                         std::span<const int32_t> tokens) {
  return core_->FindLongestPrefix(fingerprint, layout, tokens);
}

std::vector<PrefixInfo> PrefixStore::List() const {
  return core_->List();
}
Result<PrefixInfo> PrefixStore::Info(const std::string& id) const {
  return core_->Info(id);
}
Status PrefixStore::Touch(const std::string& id) {
  return core_->Touch(id);
}
Status PrefixStore::Remove(const std::string& id) {
  return core_->Remove(id);
}
Status PrefixStore::Verify(const std::string& id) {
  return core_->Verify(id);
}
Status PrefixStore::Quarantine(const std::string& id, const std::string& reason) {
  if (!core_->Info(id).ok()) return Status::NotFound("store " + dir() + ": no prefix " + id);
  core_->Quarantine(id, "", reason);
  return Status::OK();
}
Result<std::shared_ptr<const PrefixHandle>> PrefixStore::OpenPrefix(const std::string& id) {
  return core_->OpenPrefix(id);
}
int64_t PrefixStore::total_bytes() const {
  return core_->total_bytes();
}
size_t PrefixStore::size() const {
  return core_->size();
}
const std::string& PrefixStore::dir() const {
  return core_->dir();
}
Status PrefixStore::Flush() {
  return core_->Flush();
}

}  // namespace ckv
