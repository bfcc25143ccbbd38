#include "backends/cuda/device_info.hpp"

#ifdef TROUPE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace troupe::cuda {

bool built_with_cuda() {
#ifdef TROUPE_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

DeviceInfo query_devices() {
  DeviceInfo info;
#ifdef TROUPE_HAVE_CUDA
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    info.why_none = std::string("no usable CUDA device: ") + cudaGetErrorString(err);
    return info;
  }
  info.num_devices = count;
  if (count == 0) {
    info.why_none = "the CUDA runtime reports 0 devices";
    return info;
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) {
    info.name = prop.name;
    info.total_memory = prop.totalGlobalMem;
  }
#else
  info.why_none = "troupe was built without CUDA (nvcc not found at build time)";
#endif
  return info;
}

}  // namespace troupe::cuda
