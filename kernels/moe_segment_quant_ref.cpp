#include <cstddef>
#include <vector>

#include "kernels/fp8_quant.hpp"
#include "kernels/host_bf16.hpp"
#include "kernels/mlp_activation.hpp"
#include "kernels/moe_segment_quant.hpp"

namespace troupe::kernels {

void moe_segment_quant_ref(const float* rows, const int32_t* offsets, int32_t num_segments, uint8_t* x_fp8,
                           float* x_scale, int64_t num_positions, int64_t k) {
  (void)num_positions;
  const int64_t num_kb = fp8_num_blocks(k);
  for (int32_t e = 0; e < num_segments; ++e) {
    const int64_t first = offsets[e], count = offsets[e + 1] - offsets[e];
    if (count > 0) fp8_quant_ref(rows + first * k, x_fp8 + first * k, x_scale + num_kb * first, count, k);
  }
}

void moe_silu_quant_ref(const uint16_t* gate_up, const int32_t* offsets, int32_t num_segments, uint8_t* act_fp8,
                        float* act_scale, int64_t num_positions, int64_t inter) {
  std::vector<uint16_t> act(size_t(num_positions * inter));
  silu_and_mul_packed_bf16_ref(gate_up, act.data(), num_positions, inter);
  std::vector<float> wide(act.size());
  for (size_t i = 0; i < act.size(); ++i) wide[i] = host_bf16_to_f32(act[i]);
  moe_segment_quant_ref(wide.data(), offsets, num_segments, act_fp8, act_scale, num_positions, inter);
}

}  // namespace troupe::kernels
