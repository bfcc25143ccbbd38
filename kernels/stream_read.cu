#include "kernels/stream_read.hpp"

namespace troupe::kernels {
namespace {

constexpr int kThreads = 512;
constexpr int kUnroll = 4;  // independent 16-byte loads in flight per thread

__global__ void stream_read_kernel(const uint4* __restrict__ data, size_t words, uint32_t* partials) {
  uint32_t fold = 0;
  const size_t stride = size_t(gridDim.x) * kThreads;
  size_t i = size_t(blockIdx.x) * kThreads + threadIdx.x;
  for (; i + (kUnroll - 1) * stride < words; i += kUnroll * stride) {
    uint4 v[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) v[u] = __ldcs(data + i + u * stride);  // streaming: no L2 reuse
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) fold ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
  }
  for (; i < words; i += stride) {
    const uint4 v = __ldcs(data + i);
    fold ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  __shared__ uint32_t warp_folds[kThreads / 32];
  for (int offset = 16; offset > 0; offset /= 2) fold ^= __shfl_xor_sync(0xffffffffu, fold, offset);
  if (threadIdx.x % 32 == 0) warp_folds[threadIdx.x / 32] = fold;
  __syncthreads();
  if (threadIdx.x == 0) {
    uint32_t all = 0;
    for (int w = 0; w < kThreads / 32; ++w) all ^= warp_folds[w];
    partials[blockIdx.x] = all;
  }
}

}  // namespace

cudaError_t launch_stream_read(const void* data, size_t words, uint32_t* partials, int blocks, cudaStream_t stream) {
  if (words == 0) return cudaSuccess;
  if (blocks <= 0 || blocks > 65535 || reinterpret_cast<uintptr_t>(data) % 16 != 0) return cudaErrorInvalidValue;
  stream_read_kernel<<<blocks, kThreads, 0, stream>>>(static_cast<const uint4*>(data), words, partials);
  return cudaGetLastError();
}

}  // namespace troupe::kernels
