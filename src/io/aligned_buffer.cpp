#include "io/aligned_buffer.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <string>
#include <utility>

namespace ckv::io {

// ---- AlignedBuffer ----

Result<AlignedBuffer> AlignedBuffer::Allocate(size_t bytes, size_t alignment) {
  if (alignment < sizeof(void*) || (alignment & (alignment - 1)) != 0)
    return Status::InvalidArgument("aligned buffer: alignment " + std::to_string(alignment) +
                                   " is not a power of two >= " + std::to_string(sizeof(void*)));
  if (bytes == 0) return AlignedBuffer();
  if (bytes > SIZE_MAX - alignment)
    return Status::InvalidArgument("aligned buffer: " + std::to_string(bytes) + " bytes");
  const size_t rounded = AlignUp(bytes, alignment);
  void* p = nullptr;
  const int err = ::posix_memalign(&p, alignment, rounded);
  if (err != 0)
    return Status::NoSpace("aligned buffer: cannot allocate " + std::to_string(rounded) +
                           " bytes: " + std::strerror(err));
  std::memset(p, 0, rounded);
  return AlignedBuffer(static_cast<std::byte*>(p), bytes);
}

AlignedBuffer::~AlignedBuffer() {
  std::free(data_);
}

AlignedBuffer::AlignedBuffer(AlignedBuffer&& other) noexcept
    : data_(other.data_), size_(other.size_) {
  other.data_ = nullptr;
  other.size_ = 0;
}

AlignedBuffer& AlignedBuffer::operator=(AlignedBuffer&& other) noexcept {
  if (this != &other) {
    std::free(data_);
    data_ = other.data_;
    size_ = other.size_;
    other.data_ = nullptr;
    other.size_ = 0;
  }
  return *this;
}

// ---- PoolBuffer ----

PoolBuffer::PoolBuffer(PoolBuffer&& other) noexcept
    : pool_(std::move(other.pool_)),
      data_(other.data_),
      size_(other.size_),
      reserved_(other.reserved_),
      slab_(other.slab_) {
  other.data_ = nullptr;
  other.size_ = other.reserved_ = 0;
  other.slab_ = -1;
}

PoolBuffer& PoolBuffer::operator=(PoolBuffer&& other) noexcept {
  if (this != &other) {
    Release();
    pool_ = std::move(other.pool_);
    data_ = other.data_;
    size_ = other.size_;
    reserved_ = other.reserved_;
    slab_ = other.slab_;
    other.data_ = nullptr;
    other.size_ = other.reserved_ = 0;
    other.slab_ = -1;
  }
  return *this;
}

void PoolBuffer::Release() {
  if (data_ != nullptr && pool_) pool_->Free(data_, reserved_, slab_);
  data_ = nullptr;
  size_ = reserved_ = 0;
  slab_ = -1;
  pool_.reset();
}

// ---- BufferPool ----

namespace {

constexpr size_t kHugePage = size_t{2} << 20;

// Anonymous memory for one slab of `bytes`. With huge pages: a 2 MiB aligned mapping rounded up
// to whole huge pages (even for small pools, whose buffers then are physically contiguous too),
// advised MADV_HUGEPAGE. Returns the base and the mapped length.
Result<std::pair<std::byte*, size_t>> MapSlab(size_t bytes, const BufferPoolOptions& options) {
  const bool huge = options.huge_pages;
  const size_t mapped = huge ? AlignUp(bytes, kHugePage) : bytes;
  const size_t len = huge ? mapped + kHugePage : mapped;
  void* m = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED)
    return Status::NoSpace("buffer pool: cannot map a slab of " + std::to_string(bytes) +
                           " bytes: " + std::strerror(errno));
  auto* base = static_cast<std::byte*>(m);
  if (huge) {
    // Trim to the 2 MiB aligned range.
    const uintptr_t addr = reinterpret_cast<uintptr_t>(m);
    const size_t head = ((addr + kHugePage - 1) & ~(kHugePage - 1)) - addr;
    if (head > 0) ::munmap(m, head);
    base += head;
    const size_t tail = len - head - mapped;
    if (tail > 0) ::munmap(base + mapped, tail);
    ::madvise(base, mapped, MADV_HUGEPAGE);  // advisory: small pages when THP is off
  }
  if (options.prefault && ::madvise(base, mapped, MADV_POPULATE_WRITE) != 0) {
    // Before Linux 5.14: touch one byte per page.
    for (size_t off = 0; off < mapped; off += kIoAlignment) base[off] = std::byte{0};
  }
  return std::make_pair(base, mapped);
}

}  // namespace

Result<std::shared_ptr<BufferPool>> BufferPool::Create(const BufferPoolOptions& options) {
  if (options.capacity_bytes == 0)
    return Status::InvalidArgument("buffer pool: capacity must be > 0");
  const size_t max_slab = std::min(AlignUp(options.max_slab_bytes), size_t{1} << 30);
  if (max_slab == 0) return Status::InvalidArgument("buffer pool: max_slab_bytes must be > 0");
  if (options.capacity_bytes > (size_t{1} << 46))
    return Status::InvalidArgument("buffer pool: capacity " +
                                   std::to_string(options.capacity_bytes) + " bytes is too large");
  std::shared_ptr<BufferPool> pool(new BufferPool());
  pool->capacity_ = AlignUp(options.capacity_bytes);
  size_t left = pool->capacity_;
  while (left > 0) {
    const size_t bytes = std::min(left, max_slab);
    CKV_ASSIGN_OR_RETURN(const auto mapping, MapSlab(bytes, options));
    pool->slabs_.push_back({mapping.first, bytes});
    pool->mapped_.push_back(mapping.second);
    pool->free_.push_back({{size_t{0}, bytes}});
    left -= bytes;
  }
  return pool;
}

BufferPool::~BufferPool() {
  for (size_t i = 0; i < slabs_.size(); ++i) ::munmap(slabs_[i].base, mapped_[i]);
}

size_t BufferPool::in_use() const {
  std::lock_guard<std::mutex> lock(mu_);
  return in_use_;
}

size_t BufferPool::peak_in_use() const {
  std::lock_guard<std::mutex> lock(mu_);
  return peak_;
}

int BufferPool::SlabOf(const void* p, size_t bytes) const {
  const auto* b = static_cast<const std::byte*>(p);
  for (size_t i = 0; i < slabs_.size(); ++i) {
    const Slab& s = slabs_[i];
    if (b >= s.base && b <= s.base + s.bytes && bytes <= size_t(s.base + s.bytes - b))
      return static_cast<int>(i);
  }
  return -1;
}

bool BufferPool::TryAllocateLocked(size_t reserved, PoolBuffer& out) {
  if (in_use_ + reserved > capacity_) return false;
  for (size_t si = 0; si < free_.size(); ++si) {
    auto& ranges = free_[si];
    for (auto it = ranges.begin(); it != ranges.end(); ++it) {
      if (it->second < reserved) continue;
      const size_t offset = it->first;
      const size_t len = it->second;
      ranges.erase(it);
      if (len > reserved) ranges.emplace(offset + reserved, len - reserved);
      in_use_ += reserved;
      peak_ = std::max(peak_, in_use_);
      out.data_ = slabs_[si].base + offset;
      out.reserved_ = reserved;
      out.slab_ = static_cast<int>(si);
      return true;
    }
  }
  return false;
}

Result<PoolBuffer> BufferPool::TryAcquire(size_t bytes) {
  return Acquire(bytes, std::chrono::milliseconds(0));
}

Result<PoolBuffer> BufferPool::Acquire(size_t bytes, std::chrono::milliseconds timeout) {
  if (bytes == 0) return Status::InvalidArgument("buffer pool: acquire of 0 bytes");
  size_t largest_slab = 0;
  for (const Slab& s : slabs_) largest_slab = std::max(largest_slab, s.bytes);
  if (bytes > largest_slab)
    return Status::InvalidArgument("buffer pool: " + std::to_string(bytes) +
                                   " bytes exceed the largest slab (" +
                                   std::to_string(largest_slab) + " bytes)");
  const size_t reserved = AlignUp(bytes);
  PoolBuffer buf;
  {
    std::unique_lock<std::mutex> lock(mu_);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!TryAllocateLocked(reserved, buf)) {
      if (timeout.count() <= 0 || released_.wait_until(lock, deadline) == std::cv_status::timeout) {
        if (TryAllocateLocked(reserved, buf)) break;
        return Status::NoSpace("buffer pool: no room for " + std::to_string(reserved) + " bytes (" +
                               std::to_string(in_use_) + " of " + std::to_string(capacity_) +
                               " in use)");
      }
    }
  }
  buf.pool_ = shared_from_this();
  buf.size_ = bytes;
  return buf;
}

void BufferPool::Free(std::byte* data, size_t reserved, int slab) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto& ranges = free_[static_cast<size_t>(slab)];
    size_t offset = static_cast<size_t>(data - slabs_[static_cast<size_t>(slab)].base);
    size_t len = reserved;
    // Coalesce with the following and the preceding free range.
    auto next = ranges.lower_bound(offset);
    if (next != ranges.end() && next->first == offset + len) {
      len += next->second;
      next = ranges.erase(next);
    }
    if (next != ranges.begin()) {
      auto prev = std::prev(next);
      if (prev->first + prev->second == offset) {
        offset = prev->first;
        len += prev->second;
        ranges.erase(prev);
      }
    }
    ranges.emplace(offset, len);
    in_use_ -= reserved;
  }
  released_.notify_all();
}

}  // namespace ckv::io
