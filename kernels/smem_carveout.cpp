#include "kernels/smem_carveout.hpp"

#include <cstdlib>

namespace troupe::kernels {

std::atomic<int>& dependent_smem_carveout_setting() {
  static std::atomic<int> percent{-1};
  return percent;
}

int smem_carveout_for(SmemNeed need) {
  static const int forced = [] {
    const char* env = std::getenv("TROUPE_SMEM_CARVEOUT");
    return env ? std::atoi(env) : -2;
  }();
  if (forced >= -1) return forced;
  return need == SmemNeed::full ? kFullSmemCarveout : dependent_smem_carveout_setting().load(std::memory_order_relaxed);
}

}  // namespace troupe::kernels
