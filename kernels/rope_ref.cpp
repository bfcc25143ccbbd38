#include <cmath>
#include <vector>

#include "kernels/rope.hpp"

namespace troupe::kernels {

void rope_ref(float* q, float* k, const int32_t* positions, const float* inv_freq, int64_t n, int64_t num_q_heads,
              int64_t num_k_heads, int64_t head_dim, int64_t half) {
  std::vector<float> cos_v(static_cast<size_t>(half)), sin_v(static_cast<size_t>(half));
  for (int64_t t = 0; t < n; ++t) {
    const float pos = float(positions[t]);
    for (int64_t i = 0; i < half; ++i) {
      const float angle = pos * inv_freq[i];
      cos_v[size_t(i)] = float(std::cos(double(angle)));
      sin_v[size_t(i)] = float(std::sin(double(angle)));
    }
    for (int64_t head = 0; head < num_q_heads + num_k_heads; ++head) {
      float* base = head < num_q_heads ? q + (t * num_q_heads + head) * head_dim
                                       : k + (t * num_k_heads + (head - num_q_heads)) * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const float x1 = base[i], x2 = base[i + half];
        base[i] = x1 * cos_v[size_t(i)] - x2 * sin_v[size_t(i)];
        base[i + half] = x2 * cos_v[size_t(i)] + x1 * sin_v[size_t(i)];
      }
    }
  }
}

}  // namespace troupe::kernels
