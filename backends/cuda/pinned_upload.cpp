#include "backends/cuda/pinned_upload.hpp"

#include <cstring>
#include <vector>

namespace troupe::cuda {

PinnedUpload::~PinnedUpload() {
  if (stream_) cudaStreamSynchronize(stream_);
  for (int i = 0; i < 2; ++i) {
    if (copied_[i]) cudaEventDestroy(copied_[i]);
    if (buffers_[i]) cudaFreeHost(buffers_[i]);
  }
  if (stream_) cudaStreamDestroy(stream_);
}

cudaError_t PinnedUpload::ensure_buffers() {
  if (tried_) return cudaSuccess;
  tried_ = true;
  // A blocking stream: ordered after allocations made on the legacy default stream.
  if (cudaError_t e = cudaStreamCreate(&stream_); e != cudaSuccess) return e;
  for (int i = 0; i < 2; ++i) {
    if (cudaMallocHost(reinterpret_cast<void**>(&buffers_[i]), kChunkBytes) != cudaSuccess) {
      cudaGetLastError();  // not sticky: pageable fallback below
      return cudaSuccess;
    }
    if (cudaError_t e = cudaEventCreateWithFlags(&copied_[i], cudaEventDisableTiming); e != cudaSuccess) return e;
  }
  pinned_ = true;
  return cudaSuccess;
}

cudaError_t PinnedUpload::copy(void* dst, size_t nbytes, const std::function<void(uint8_t*, size_t, size_t)>& fill) {
  if (cudaError_t e = ensure_buffers(); e != cudaSuccess) return e;
  auto* out = static_cast<uint8_t*>(dst);
  if (!pinned_) {
    std::vector<uint8_t> chunk(std::min(nbytes, kChunkBytes));
    for (size_t off = 0; off < nbytes; off += kChunkBytes) {
      const size_t n = std::min(kChunkBytes, nbytes - off);
      fill(chunk.data(), off, n);
      if (cudaError_t e = cudaMemcpy(out + off, chunk.data(), n, cudaMemcpyHostToDevice); e != cudaSuccess) return e;
    }
    return cudaSuccess;
  }
  bool used[2] = {false, false};
  int k = 0;
  for (size_t off = 0; off < nbytes; off += kChunkBytes, k ^= 1) {
    const size_t n = std::min(kChunkBytes, nbytes - off);
    if (used[k]) {
      if (cudaError_t e = cudaEventSynchronize(copied_[k]); e != cudaSuccess) return e;
    }
    fill(buffers_[k], off, n);
    if (cudaError_t e = cudaMemcpyAsync(out + off, buffers_[k], n, cudaMemcpyHostToDevice, stream_); e != cudaSuccess)
      return e;
    if (cudaError_t e = cudaEventRecord(copied_[k], stream_); e != cudaSuccess) return e;
    used[k] = true;
  }
  return cudaStreamSynchronize(stream_);
}

cudaError_t PinnedUpload::copy(void* dst, const void* src, size_t nbytes) {
  const auto* in = static_cast<const uint8_t*>(src);
  return copy(dst, nbytes, [in](uint8_t* staging, size_t offset, size_t count) { std::memcpy(staging, in + offset, count); });
}

}  // namespace troupe::cuda
