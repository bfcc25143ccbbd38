#include <cmath>

#include "kernels/rmsnorm.hpp"

namespace troupe::kernels {

void rmsnorm_ref(const float* x, const float* weight, float* out, int64_t num_tokens, int64_t hidden,
                 float eps) {
  for (int64_t t = 0; t < num_tokens; ++t) {
    const float* row = x + t * hidden;
    double sum_sq = 0.0;
    for (int64_t i = 0; i < hidden; ++i) sum_sq += double(row[i]) * row[i];
    const float scale = 1.0f / std::sqrt(float(sum_sq / double(hidden)) + eps);
    for (int64_t i = 0; i < hidden; ++i) out[t * hidden + i] = row[i] * scale * weight[i];
  }
}

}  // namespace troupe::kernels
