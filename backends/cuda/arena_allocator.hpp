#pragma once
// First-fit suballocation of one fixed region by offsets, with neighbouring free ranges merged.
// The CUDA backend carves a step graph's tensors out of one device region this way, so a recorded
// graph's addresses stay fixed and its memory is reused by every recording (they never run at once).
// Host bookkeeping only; not thread-safe.
#include <cstddef>
#include <map>
#include <optional>

namespace troupe::cuda {

class ArenaAllocator {
 public:
  static constexpr size_t kAlignment = 256;  // every offset is a multiple of this

  explicit ArenaAllocator(size_t capacity);

  // The offset of `bytes` free bytes (0 bytes take one alignment unit), or nullopt when no free
  // range is large enough.
  std::optional<size_t> allocate(size_t bytes);
  // Returns the range allocated at `offset`; false when nothing is allocated there.
  bool release(size_t offset);

  size_t capacity() const { return capacity_; }
  size_t bytes_in_use() const { return in_use_; }
  size_t peak_bytes_in_use() const { return peak_; }
  size_t num_allocations() const { return used_.size(); }

 private:
  size_t capacity_;
  size_t in_use_ = 0, peak_ = 0;
  std::map<size_t, size_t> free_;  // offset -> size, disjoint and never adjacent
  std::map<size_t, size_t> used_;  // offset -> size
};

}  // namespace troupe::cuda
