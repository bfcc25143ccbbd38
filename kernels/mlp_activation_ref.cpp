#include <cmath>

#include "kernels/host_bf16.hpp"
#include "kernels/mlp_activation.hpp"

namespace troupe::kernels {

void silu_and_mul_packed_bf16_ref(const uint16_t* gate_up, uint16_t* out, int64_t n, int64_t inter) {
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t c = 0; c < inter; ++c) {
      const float gate = host_bf16_to_f32(gate_up[t * 2 * inter + c]);
      const float up = host_bf16_to_f32(gate_up[t * 2 * inter + inter + c]);
      out[t * inter + c] = host_f32_to_bf16(gate / (1.0f + std::exp(-gate)) * up);
    }
  }
}

}  // namespace troupe::kernels
