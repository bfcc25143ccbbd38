#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/fp8_quant.hpp"
#include "kernels/host_fp8.hpp"
#include "kernels/moe_grouped_gemv.hpp"

namespace troupe::kernels {

void moe_local_ids_ref(const int32_t* ids, const float* weights, int64_t n, int32_t top_k, int32_t expert_begin,
                       int32_t num_local, bool with_shared, int32_t* ids_out, float* weights_out) {
  const int64_t out_k = top_k + (with_shared ? 1 : 0);
  for (int64_t t = 0; t < n; ++t) {
    for (int32_t s = 0; s < top_k; ++s) {
      const int32_t id = ids[t * top_k + s];
      ids_out[t * out_k + s] = id >= expert_begin && id < expert_begin + num_local ? id - expert_begin : -1;
      weights_out[t * out_k + s] = weights[t * top_k + s];
    }
    if (with_shared) {
      ids_out[t * out_k + top_k] = num_local;
      weights_out[t * out_k + top_k] = 1.0f;
    }
  }
}

void moe_active_experts_ref(const int32_t* ids, int64_t num_slots, const int32_t* counts, const int32_t* offsets,
                            int32_t expert_begin, int32_t num_local, int32_t* num_active, int32_t* active_expert,
                            int32_t* active_begin, int32_t* slot_pos) {
  int32_t total = 0;
  for (int32_t e = 0; e < num_local; ++e) {
    if (counts[expert_begin + e] <= 0) continue;
    active_expert[total] = e;
    active_begin[total] = offsets[expert_begin + e];
    ++total;
  }
  *num_active = total;
  active_begin[total] = offsets[expert_begin + num_local];
  for (int64_t s = 0; s < num_slots; ++s)
    if (ids[s] < expert_begin || ids[s] >= expert_begin + num_local) slot_pos[s] = -1;
}

void moe_gather_scaled_ref(const float* x, const int32_t* sorted_slots, int32_t slot_div, float* x_perm,
                           int64_t num_positions, int64_t k, int64_t x_stride) {
  for (int64_t p = 0; p < num_positions; ++p) {
    const int32_t slot = sorted_slots[p];
    for (int64_t c = 0; c < x_stride; ++c)
      x_perm[p * x_stride + c] = slot >= 0 && c < k ? x[int64_t(slot / slot_div) * k + c] : 0.0f;
  }
}

void moe_expert_rows_ref(const float* x, int64_t x_stride, const uint8_t* w, const float* w_scale, double* out,
                         int64_t m, int64_t rows, int64_t k) {
  const int64_t num_kb = fp8_num_blocks(k);
  std::vector<double> w_row(static_cast<size_t>(k));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < k; ++i) w_row[size_t(i)] = host_e4m3_to_f32(w[r * k + i]);
    for (int64_t p = 0; p < m; ++p) {
      double total = 0;
      for (int64_t kb = 0; kb < num_kb; ++kb) {
        double block = 0;
        for (int64_t i = kb * kFp8BlockSize; i < std::min(k, (kb + 1) * kFp8BlockSize); ++i)
          block += double(x[p * x_stride + i]) * w_row[size_t(i)];
        total += block * double(w_scale[(r / kFp8BlockSize) * num_kb + kb]);
      }
      out[p * rows + r] = total;
    }
  }
}

void moe_expert_silu_ref(const float* x, int64_t x_stride, const uint8_t* gate_up, const float* gate_up_scale,
                         double* act, int64_t m, int64_t inter, int64_t k) {
  std::vector<double> gu(static_cast<size_t>(m * 2 * inter));
  moe_expert_rows_ref(x, x_stride, gate_up, gate_up_scale, gu.data(), m, 2 * inter, k);
  for (int64_t p = 0; p < m; ++p) {
    for (int64_t c = 0; c < inter; ++c) {
      const double g = gu[size_t(p * 2 * inter + c)], u = gu[size_t(p * 2 * inter + inter + c)];
      act[p * inter + c] = g / (1.0 + std::exp(-g)) * u;
    }
  }
}

}  // namespace troupe::kernels
