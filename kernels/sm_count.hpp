#pragma once
// The SM count of the current device, which the launchers' plans divide work by, and how many
// blocks of a kernel one SM holds; cached per host thread (no locking) and looked up again when
// the thread's device changes.
#include <cuda_runtime_api.h>

#include <map>
#include <tuple>

namespace troupe::kernels {

inline cudaError_t current_sm_count(int* sms) {
  int device = 0;
  if (cudaError_t err = cudaGetDevice(&device); err != cudaSuccess) return err;
  thread_local int cached_device = -1, cached_sms = 0;
  if (device != cached_device) {
    if (cudaError_t err = cudaDeviceGetAttribute(&cached_sms, cudaDevAttrMultiProcessorCount, device);
        err != cudaSuccess)
      return err;
    cached_device = device;
  }
  *sms = cached_sms > 0 ? cached_sms : 1;
  return cudaSuccess;
}

// Blocks of `kernel` with `threads` threads and `smem` dynamic shared bytes that one SM of the
// current device holds, cached per (device, kernel, threads, smem) for this host thread. A kernel
// that may take more than the default 48 KB passes smem_limit, the most any of its launches takes:
// its limit is raised to that (one value, so a later launch with less never lowers it under an
// earlier one's) before the first query on each device.
inline cudaError_t resident_blocks_per_sm(const void* kernel, int threads, size_t smem, int* blocks,
                                          size_t smem_limit = 0) {
  int device = 0;
  if (cudaError_t err = cudaGetDevice(&device); err != cudaSuccess) return err;
  thread_local std::map<std::tuple<int, const void*, int, size_t>, int> cache;
  const auto key = std::make_tuple(device, kernel, threads, smem);
  if (auto it = cache.find(key); it != cache.end()) return *blocks = it->second, cudaSuccess;
  if (smem_limit > 48 * 1024)
    if (cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem_limit));
        err != cudaSuccess)
      return err;
  if (cudaError_t err = cudaOccupancyMaxActiveBlocksPerMultiprocessor(blocks, kernel, threads, smem); err != cudaSuccess)
    return err;
  cache.emplace(key, *blocks);
  return cudaSuccess;
}

}  // namespace troupe::kernels
