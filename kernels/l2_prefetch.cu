#include "kernels/l2_prefetch.hpp"

#include <cstdint>

#include "kernels/dependent_launch.cuh"

namespace troupe::kernels {
namespace {

constexpr size_t kChunkBytes = size_t(16) << 10;

__global__ void l2_prefetch_kernel(const uint8_t* __restrict__ p, size_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const size_t chunks = (bytes + kChunkBytes - 1) / kChunkBytes;
  for (size_t c = size_t(blockIdx.x) * blockDim.x + threadIdx.x; c < chunks; c += size_t(gridDim.x) * blockDim.x) {
    const size_t offset = c * kChunkBytes;
    const uint32_t n = uint32_t(bytes - offset < kChunkBytes ? bytes - offset : kChunkBytes);
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p + offset), "r"(n) : "memory");
  }
#else
  (void)p;
  (void)bytes;
#endif
}

}  // namespace

cudaError_t launch_l2_prefetch(const void* p, size_t bytes, int blocks, cudaStream_t stream) {
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + 15) & ~uintptr_t(15);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + bytes) & ~uintptr_t(15);
  if (!p || end <= begin || blocks < 1) return cudaSuccess;
  const PlainLaunches plain;
  return launch_dependent(l2_prefetch_kernel, dim3(unsigned(blocks)), dim3(32), 0, stream,
                          reinterpret_cast<const uint8_t*>(begin), size_t(end - begin));
}

}  // namespace troupe::kernels
