#include "backends/cuda/arena_allocator.hpp"

namespace troupe::cuda {

ArenaAllocator::ArenaAllocator(size_t capacity) : capacity_(capacity / kAlignment * kAlignment) {
  if (capacity_ > 0) free_[0] = capacity_;
}

std::optional<size_t> ArenaAllocator::allocate(size_t bytes) {
  const size_t size = bytes == 0 ? kAlignment : (bytes + kAlignment - 1) / kAlignment * kAlignment;
  if (size < bytes) return std::nullopt;  // overflow
  for (auto it = free_.begin(); it != free_.end(); ++it) {
    if (it->second < size) continue;
    const size_t offset = it->first, rest = it->second - size;
    free_.erase(it);
    if (rest > 0) free_[offset + size] = rest;
    used_[offset] = size;
    in_use_ += size;
    if (in_use_ > peak_) peak_ = in_use_;
    return offset;
  }
  return std::nullopt;
}

bool ArenaAllocator::release(size_t offset) {
  auto it = used_.find(offset);
  if (it == used_.end()) return false;
  size_t begin = offset, size = it->second;
  used_.erase(it);
  in_use_ -= size;
  auto next = free_.lower_bound(begin);
  if (next != free_.end() && next->first == begin + size) {
    size += next->second;
    next = free_.erase(next);
  }
  if (next != free_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == begin) {
      begin = prev->first;
      size += prev->second;
      free_.erase(prev);
    }
  }
  free_[begin] = size;
  return true;
}

}  // namespace troupe::cuda
