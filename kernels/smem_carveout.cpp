#include "kernels/smem_carveout.hpp"

namespace troupe::kernels {

std::atomic<int>& dependent_smem_carveout_setting() {
  static std::atomic<int> percent{-1};
  return percent;
}

}  // namespace troupe::kernels
