#include <algorithm>
#include <cmath>

#include "kernels/fp8_quant.hpp"
#include "kernels/host_fp8.hpp"

namespace troupe::kernels {

void fp8_quant_ref(const float* x, uint8_t* x_fp8, float* x_scale, int64_t m, int64_t k) {
  const int64_t num_kb = fp8_num_blocks(k);
  for (int64_t t = 0; t < m; ++t) {
    for (int64_t kb = 0; kb < num_kb; ++kb) {
      const int64_t begin = kb * kFp8BlockSize, end = std::min(k, begin + kFp8BlockSize);
      float amax = 0.0f;
      for (int64_t i = begin; i < end; ++i) amax = std::fmax(amax, std::fabs(x[t * k + i]));
      amax = std::fmax(amax, kFp8MinAmax);
      const float inv = kE4m3Max / amax;
      for (int64_t i = begin; i < end; ++i) x_fp8[t * k + i] = host_f32_to_e4m3(x[t * k + i] * inv);
      x_scale[kb * m + t] = amax / kE4m3Max;
    }
  }
}

}  // namespace troupe::kernels
