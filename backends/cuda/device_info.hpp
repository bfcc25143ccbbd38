#pragma once
// What accelerators this process sees. Works in CPU-only builds (reports none).
#include <string>

namespace troupe::cuda {

struct DeviceInfo {
  int num_devices = 0;
  std::string name;           // of device 0
  size_t total_memory = 0;    // bytes, of device 0
  std::string why_none;       // when num_devices == 0: why (no CUDA build, no driver, ...)
};

bool built_with_cuda();
DeviceInfo query_devices();

}  // namespace troupe::cuda
