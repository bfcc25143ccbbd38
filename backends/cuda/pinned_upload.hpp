#pragma once
// Host-to-device copies of weights through two pinned staging buffers: the host fills chunk k + 1
// (a memcpy out of the mapped checkpoint, or a dtype conversion) while the DMA engine moves chunk k.
// A cudaMemcpy from pageable memory stages through the driver's small buffers instead and, with
// the conversion done before it, leaves the copy engine idle most of a load.
//
//   fill(buffer a, chunk 0) -> async copy a | fill(buffer b, chunk 1) -> async copy b |
//   wait copy a -> fill(a, chunk 2) -> ...                  (synchronous on return)
//
// NOTE: one upload at a time (the buffers are shared); the backend loads weights on one thread.
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <functional>

namespace troupe::cuda {

class PinnedUpload {
 public:
  static constexpr size_t kChunkBytes = size_t(32) << 20;

  PinnedUpload() = default;
  ~PinnedUpload();
  PinnedUpload(const PinnedUpload&) = delete;
  PinnedUpload& operator=(const PinnedUpload&) = delete;

  // Writes `nbytes` to device memory `dst`; `fill(staging, offset, count)` writes bytes
  // [offset, offset + count) of the data into `staging` (count <= kChunkBytes, offsets in order).
  // Returns the first CUDA error. Without pinned memory (allocation refused) it fills a pageable
  // chunk and copies synchronously: slower, same result.
  cudaError_t copy(void* dst, size_t nbytes, const std::function<void(uint8_t*, size_t, size_t)>& fill);
  // Plain bytes.
  cudaError_t copy(void* dst, const void* src, size_t nbytes);

 private:
  cudaError_t ensure_buffers();

  uint8_t* buffers_[2] = {nullptr, nullptr};
  cudaEvent_t copied_[2] = {nullptr, nullptr};
  cudaStream_t stream_ = nullptr;
  bool pinned_ = false;
  bool tried_ = false;
};

}  // namespace troupe::cuda
