#pragma once
// GPU tests skip (ctest shows "Skipped") with the reason when no CUDA device is usable.
#include <gtest/gtest.h>

#include "kernels/device_info.hpp"

#define TROUPE_REQUIRE_GPU()                                                    \
  do {                                                                          \
    const auto troupe_devices_ = troupe::kernels::query_devices();             \
    if (troupe_devices_.num_devices == 0) GTEST_SKIP() << troupe_devices_.why_none; \
  } while (0)
