#pragma once
// One host region handed out as tensors in ring order and reused as they are freed: the reads of a
// load land in memory that is already faulted in. A fresh buffer per tensor made every pread fault
// its pages in, and on a 2-core VM those faults (and the frees' unmaps) contended with the
// consumer's own allocations: 4 threads of 16 MiB preads read a cold file at 0.23 GB/s into fresh
// buffers against 1.58 GB/s into reused ones.
//
//   [ free | live tensors in allocation order (tail .. head) | free ]   wraps around at the end
//
// allocate() takes the next contiguous room after the newest live tensor (or from the start when
// the end has none); a tensor's storage going away frees its block, and the oldest freed blocks
// give their room back. A tensor kept for long (a CPU backend keeping a weight as read) holds its
// block and the ring's room behind it: allocate() then returns an undefined tensor and the caller
// falls back to Tensor::empty. Thread-safe; the region lives until its last tensor is gone.
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <vector>

#include "runtime/tensor.hpp"

namespace troupe {

class HostRing : public std::enable_shared_from_this<HostRing> {
 public:
  static std::shared_ptr<HostRing> create(size_t bytes);
  ~HostRing();
  HostRing(const HostRing&) = delete;
  HostRing& operator=(const HostRing&) = delete;

  // A host tensor in the ring, or an undefined one when it has no contiguous room.
  Tensor allocate(DType dtype, std::vector<int64_t> shape);
  size_t capacity() const { return bytes_; }
  size_t live_bytes() const;

 private:
  struct Block {
    size_t begin = 0, end = 0;
    bool freed = false;
  };
  explicit HostRing(size_t bytes);
  void release(size_t begin);

  char* base_ = nullptr;
  size_t bytes_ = 0;
  mutable std::mutex mutex_;
  std::deque<Block> blocks_;  // live (or freed but not yet reclaimed) in allocation order
};

}  // namespace troupe
