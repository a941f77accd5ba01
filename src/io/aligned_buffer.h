// Memory for O_DIRECT reads: page-aligned RAII buffers, and a bounded pool carved out of a few
// large slabs that an IoEngine can register with io_uring as fixed buffers.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "ckv/status.h"

namespace ckv::io {

// O_DIRECT needs the buffer address, file offset and length aligned to the logical block size
// of the device (512 or 4096); 4096 satisfies every device we target.
inline constexpr size_t kIoAlignment = 4096;

// Rounds `bytes` up to a multiple of `alignment` (a power of two).
constexpr size_t AlignUp(size_t bytes, size_t alignment = kIoAlignment) {
  return (bytes + alignment - 1) & ~(alignment - 1);
}

// One aligned heap allocation (posix_memalign), freed on destruction. Move-only.
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  // `bytes` may be 0 (an empty buffer). The memory is zero-filled.
  static Result<AlignedBuffer> Allocate(size_t bytes, size_t alignment = kIoAlignment);
  ~AlignedBuffer();
  AlignedBuffer(AlignedBuffer&& other) noexcept;
  AlignedBuffer& operator=(AlignedBuffer&& other) noexcept;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;

  std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  std::span<std::byte> span() const { return {data_, size_}; }

 private:
  AlignedBuffer(std::byte* data, size_t size) : data_(data), size_(size) {}
  std::byte* data_ = nullptr;
  size_t size_ = 0;
};

class BufferPool;

// A region of a BufferPool, returned to the pool on destruction (or Release()). Move-only.
// It keeps the pool alive, so it may outlive the caller's pointer to the pool.
class PoolBuffer {
 public:
  PoolBuffer() = default;
  ~PoolBuffer() { Release(); }
  PoolBuffer(PoolBuffer&& other) noexcept;
  PoolBuffer& operator=(PoolBuffer&& other) noexcept;
  PoolBuffer(const PoolBuffer&) = delete;
  PoolBuffer& operator=(const PoolBuffer&) = delete;

  std::byte* data() const { return data_; }
  // The size asked for; the region reserved in the pool is this rounded up to kIoAlignment.
  size_t size() const { return size_; }
  std::span<std::byte> span() const { return {data_, size_}; }
  explicit operator bool() const { return data_ != nullptr; }
  // Index of the pool slab holding the buffer (the fixed-buffer index once registered).
  int slab() const { return slab_; }
  void Release();

 private:
  friend class BufferPool;
  std::shared_ptr<BufferPool> pool_;
  std::byte* data_ = nullptr;
  size_t size_ = 0;
  size_t reserved_ = 0;
  int slab_ = -1;
};

struct BufferPoolOptions {
  // Hard cap on the bytes handed out at once (rounded up to kIoAlignment).
  size_t capacity_bytes = size_t{64} << 20;
  // Largest slab; the capacity is split into ceil(capacity / max_slab_bytes) slabs. io_uring
  // refuses fixed buffers above 1 GiB, so that is also the upper limit.
  size_t max_slab_bytes = size_t{1} << 30;
  // Touch every page at creation so the first reads do not page-fault.
  bool prefault = true;
  // Ask for transparent huge pages (2 MiB aligned slabs, MADV_HUGEPAGE): a read then lands in
  // few physically contiguous segments instead of one per 4 KiB page, which devices (notably
  // virtio disks) process faster. Slabs are then mapped in whole 2 MiB pages (at most 2 MiB
  // more than the capacity per slab; only the capacity is ever handed out). Silently falls
  // back to small pages when THP is disabled.
  bool huge_pages = true;
};

// A bounded, thread-safe pool of kIoAlignment-aligned buffers. Every byte handed out comes from
// the slabs mapped at creation, so the pool never holds more than its capacity; allocation is
// first-fit over free ranges with coalescing on release. A request never straddles slabs, so
// the largest single buffer is the slab size.
class BufferPool : public std::enable_shared_from_this<BufferPool> {
 public:
  struct Slab {
    std::byte* base;
    size_t bytes;
  };

  static Result<std::shared_ptr<BufferPool>> Create(const BufferPoolOptions& options);
  ~BufferPool();
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  // Returns a buffer of `bytes` (> 0) at once, or kNoSpace when it would exceed the cap (or no
  // free range is large enough), kInvalidArgument when it could never fit.
  Result<PoolBuffer> TryAcquire(size_t bytes);
  // Like TryAcquire, but waits up to `timeout` for other holders to release memory.
  Result<PoolBuffer> Acquire(size_t bytes, std::chrono::milliseconds timeout);

  size_t capacity() const { return capacity_; }
  size_t in_use() const;       // bytes reserved now (multiples of kIoAlignment)
  size_t peak_in_use() const;  // high-water mark of in_use()
  // The slabs, fixed for the pool's lifetime (what an IoEngine registers).
  std::span<const Slab> slabs() const { return slabs_; }
  // Index of the slab holding [p, p + bytes), or -1.
  int SlabOf(const void* p, size_t bytes) const;

 private:
  friend class PoolBuffer;
  BufferPool() = default;
  bool TryAllocateLocked(size_t reserved, PoolBuffer& out);
  void Free(std::byte* data, size_t reserved, int slab);

  size_t capacity_ = 0;
  std::vector<Slab> slabs_;
  std::vector<size_t> mapped_;  // mapped length of each slab (>= its bytes)
  mutable std::mutex mu_;
  std::condition_variable released_;
  // Per slab: free ranges, offset -> length.
  std::vector<std::map<size_t, size_t>> free_;
  size_t in_use_ = 0;
  size_t peak_ = 0;
};

}  // namespace ckv::io
