#include <algorithm>
#include <vector>

#include "kernels/fp8_block_gemm.hpp"
#include "kernels/fp8_quant.hpp"
#include "kernels/host_fp8.hpp"

namespace troupe::kernels {

void fp8_block_gemm_ref(const float* x, const float* x_scale, const uint8_t* w, const float* w_scale, double* out,
                        int64_t m, int64_t n, int64_t k) {
  const int64_t num_kb = fp8_num_blocks(k);
  std::vector<float> w_row(static_cast<size_t>(k));
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t i = 0; i < k; ++i) w_row[size_t(i)] = host_e4m3_to_f32(w[j * k + i]);
    for (int64_t t = 0; t < m; ++t) {
      double total = 0;
      for (int64_t kb = 0; kb < num_kb; ++kb) {
        double block = 0;
        for (int64_t i = kb * kFp8BlockSize; i < std::min(k, (kb + 1) * kFp8BlockSize); ++i)
          block += double(x[t * k + i]) * double(w_row[size_t(i)]);
        const double xs = x_scale ? double(x_scale[kb * m + t]) : 1.0;
        total += block * xs * double(w_scale[(j / kFp8BlockSize) * num_kb + kb]);
      }
      out[t * n + j] = total;
    }
  }
}

}  // namespace troupe::kernels
