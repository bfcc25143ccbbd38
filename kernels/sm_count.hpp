#pragma once
// The SM count of the current device, which the launchers' plans divide work by; cached per host
// thread (no locking) and looked up again when the thread's device changes.
#include <cuda_runtime_api.h>

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

}  // namespace troupe::kernels
