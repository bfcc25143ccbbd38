#pragma once
// GPU tests skip (ctest shows "Skipped") with the reason when no CUDA device is usable.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "backends/cuda/device_info.hpp"

#define TROUPE_REQUIRE_GPU()                                                    \
  do {                                                                          \
    const auto troupe_devices_ = troupe::cuda::query_devices();             \
    if (troupe_devices_.num_devices == 0) GTEST_SKIP() << troupe_devices_.why_none; \
  } while (0)

// The source tree: $TROUPE_SOURCE_DIR when set (the GPU bundle runs far from where it was built),
// else the tree this binary was built from.
inline std::string troupe_source_dir() {
  const char* env = std::getenv("TROUPE_SOURCE_DIR");
  return env && *env ? env : TROUPE_SOURCE_DIR;
}
