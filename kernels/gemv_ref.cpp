#include <cmath>

#include "kernels/gemv.hpp"
#include "kernels/host_bf16.hpp"

namespace troupe::kernels {

void gemv_bf16_ref(const float* x, const uint16_t* weight, const float* bias, double* out, double* abs_sum,
                   int64_t n, int64_t out_features, int64_t in_features) {
  for (int64_t t = 0; t < n; ++t) {
    const float* xt = x + t * in_features;
    for (int64_t o = 0; o < out_features; ++o) {
      const uint16_t* w = weight + o * in_features;
      double sum = bias ? double(bias[o]) : 0.0;
      double mag = bias ? std::fabs(double(bias[o])) : 0.0;
      for (int64_t i = 0; i < in_features; ++i) {
        const double p = double(xt[i]) * double(host_bf16_to_f32(w[i]));
        sum += p;
        mag += std::fabs(p);
      }
      out[t * out_features + o] = sum;
      if (abs_sum) abs_sum[t * out_features + o] = mag;
    }
  }
}

}  // namespace troupe::kernels
