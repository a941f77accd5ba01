#include "pipeline/prefix_range_reader.h"

#include <xxhash.h>

#include <chrono>

namespace ckv {

ChunkCache::Data FetchedRange::Copy() const {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes());
  return std::make_shared<const std::vector<unsigned char>>(p, p + length);
}

void PrefixRangeReader::Reset(const RequestContext& ctx, PolicyAccounting* acct) {
  ctx_ = ctx;
  acct_ = acct;
  issued_.clear();
  path_hash_.clear();
  for (const StoreFile& f : ctx.prefix->files()) {
    path_hash_.push_back(XXH3_64bits(f.path.data(), f.path.size()));
  }
}

ChunkKey PrefixRangeReader::Key(int file, RangeCut cut, int32_t group, uint64_t offset) const {
  uint64_t seg = path_hash_[static_cast<size_t>(file)];
  if (cut != RangeCut::kUnit) seg ^= 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(cut);
  return ChunkKey{seg, group, static_cast<int64_t>(offset)};
}

std::shared_ptr<FetchedRange> PrefixRangeReader::Fetch(
    int file, uint64_t offset, uint32_t length, const ChunkKey& key,
    std::function<Status(const std::byte*)> verify, std::string label) {
  return Start(file, offset, length, key, std::move(verify), std::move(label), /*ahead=*/false);
}

std::shared_ptr<FetchedRange> PrefixRangeReader::FetchAhead(
    int file, uint64_t offset, uint32_t length, const ChunkKey& key,
    std::function<Status(const std::byte*)> verify, std::string label) {
  return Start(file, offset, length, key, std::move(verify), std::move(label), /*ahead=*/true);
}

std::shared_ptr<FetchedRange> PrefixRangeReader::Start(
    int file, uint64_t offset, uint32_t length, const ChunkKey& key,
    std::function<Status(const std::byte*)> verify, std::string label, bool ahead) {
  auto r = std::make_shared<FetchedRange>();
  r->key = key;
  r->offset = offset;
  r->length = length;
  if (ctx_.cache != nullptr) {
    if (auto hit = ctx_.cache->Lookup(key)) {
      r->cached = std::move(hit);
      return r;
    }
  }
  const StoreFile& f = ctx_.prefix->files()[static_cast<size_t>(file)];
  const int fd = f.direct_fd >= 0 ? f.direct_fd : f.fd;
  if (ahead) {
    r->slot = ctx_.loader->TryLoad(fd, offset, length, std::move(verify), std::move(label));
    if (!r->slot) return nullptr;
  } else {
    r->slot = ctx_.loader->Load(fd, offset, length, std::move(verify), std::move(label));
  }
  issued_.push_back(r->slot);
  return r;
}

Status PrefixRangeReader::Wait(const FetchedRange& r) {
  if (!r.slot) return Status::OK();
  if (r.slot->ready()) return r.slot->status();
  const auto t0 = std::chrono::steady_clock::now();
  const double b = ctx_.tracer->NowUs();
  Status st = ctx_.loader->Wait(*r.slot);
  acct_->io_wait_ms +=
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (ctx_.tracer->enabled()) {
    ctx_.tracer->Complete(Tracer::kCompute, "wait I/O", b, ctx_.tracer->NowUs());
  }
  return st;
}

void PrefixRangeReader::Account(const FetchedRange& r, bool scoring) const {
  // Identification-only reads are kept apart (scoring_bytes_*), so the hit ratio and the read
  // amplification speak of the data attended (see ReprefillStats for the one definition).
  if (!r.from_ssd()) {
    const auto n = static_cast<int64_t>(r.cached->size());
    if (scoring) {
      acct_->scoring_bytes_hit += n;
    } else {
      acct_->cache_bytes_hit += n;
      ++acct_->cache_hits;
    }
    return;
  }
  if (scoring) {
    acct_->scoring_bytes_read += r.length;
    return;
  }
  if (ctx_.cache != nullptr) ++acct_->cache_misses;
  acct_->ssd_bytes_read += r.length;
}

void PrefixRangeReader::AccountWasted(const FetchedRange& r) const {
  if (!r.from_ssd()) return;
  acct_->ssd_bytes_read += r.length;
  acct_->speculative_bytes_wasted += r.length;
}

void PrefixRangeReader::AccountAttendedAfterAll(const FetchedRange& r) const {
  if (!r.from_ssd()) return;
  acct_->scoring_bytes_read -= r.length;
  acct_->ssd_bytes_read += r.length;
}

void PrefixRangeReader::Insert(const FetchedRange& r) const {
  if (ctx_.cache == nullptr || !r.slot || !r.slot->ready() || !r.slot->status().ok()) return;
  ctx_.cache->Insert(r.key, r.Copy());
}

void PrefixRangeReader::Insert(const ChunkKey& key, ChunkCache::Data data) const {
  if (ctx_.cache != nullptr) ctx_.cache->Insert(key, std::move(data));
}

void PrefixRangeReader::Feedback(const ChunkKey& key, double importance,
                                 double important_fraction) const {
  if (ctx_.cache != nullptr) ctx_.cache->Feedback(key, importance, important_fraction);
}

void PrefixRangeReader::Drain() {
  // A read may still be in flight (a request that failed midway): it must finish before the
  // request's tracer and stats go away.
  for (auto& weak : issued_) {
    if (auto slot = weak.lock(); slot && !slot->ready()) (void)ctx_.loader->Wait(*slot);
  }
  issued_.clear();
}

}  // namespace ckv
