#include "runtime/host_ring.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <new>

namespace troupe {
namespace {

constexpr size_t kAlign = 4096;  // every block starts on a page: preads into it stay page aligned
constexpr size_t kHugePage = size_t(2) << 20;

}  // namespace

std::shared_ptr<HostRing> HostRing::create(size_t bytes) {
  return std::shared_ptr<HostRing>(new HostRing(bytes));
}

HostRing::HostRing(size_t bytes) {
  bytes_ = (bytes + kAlign - 1) / kAlign * kAlign;
  if (bytes_ == 0) return;
  const size_t padded = (bytes_ + kHugePage - 1) / kHugePage * kHugePage;  // aligned_alloc wants a multiple
  base_ = static_cast<char*>(std::aligned_alloc(kHugePage, padded));
  if (base_ == nullptr) {
    bytes_ = 0;
    return;
  }
  ::madvise(base_, padded, MADV_HUGEPAGE);  // a hint: refused, nothing changes
}

HostRing::~HostRing() { std::free(base_); }

size_t HostRing::live_bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  size_t n = 0;
  for (const Block& b : blocks_)
    if (!b.freed) n += b.end - b.begin;
  return n;
}

Tensor HostRing::allocate(DType dtype, std::vector<int64_t> shape) {
  const size_t nbytes = size_t(numel_of(shape)) * dtype_size(dtype);
  const size_t size = (std::max<size_t>(nbytes, 1) + kAlign - 1) / kAlign * kAlign;
  size_t begin = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (base_ == nullptr || size > bytes_) return Tensor();
    if (blocks_.empty()) {
      begin = 0;
    } else {
      const size_t head = blocks_.back().end, tail = blocks_.front().begin;
      if (head > tail) {
        // Live blocks lie in [tail, head): room after head, else from the start up to tail.
        if (head + size <= bytes_) begin = head;
        else if (size <= tail) begin = 0;
        else return Tensor();
      } else {
        // Wrapped: live blocks lie in [tail, bytes_) and [0, head): room in [head, tail).
        if (head + size <= tail) begin = head;
        else return Tensor();
      }
    }
    blocks_.push_back(Block{begin, begin + size, false});
  }
  auto self = shared_from_this();
  auto* storage = new Storage();
  storage->data = base_ + begin;
  storage->nbytes = nbytes;
  storage->device = Device::cpu;
  storage->deleter = nullptr;  // the ring takes the block back, below
  std::shared_ptr<Storage> owned(storage, [self, begin](Storage* s) {
    s->data = nullptr;
    delete s;
    self->release(begin);
  });
  return Tensor::wrap(std::move(owned), dtype, std::move(shape));
}

void HostRing::release(size_t begin) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (Block& b : blocks_)
    if (b.begin == begin && !b.freed) {
      b.freed = true;
      break;
    }
  while (!blocks_.empty() && blocks_.front().freed) blocks_.pop_front();
}

}  // namespace troupe
