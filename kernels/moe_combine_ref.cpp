// The MoE gather and combine CPU references (moe_combine.hpp).
#include <cmath>
#include <cstring>

#include "kernels/host_bf16.hpp"
#include "kernels/moe_combine.hpp"

namespace troupe::kernels {
namespace {

template <class T>
void gather(const T* x, const int32_t* sorted_slots, T* x_perm, int64_t num_positions, int32_t top_k, int64_t hidden) {
  for (int64_t p = 0; p < num_positions; ++p) {
    if (sorted_slots[p] < 0) continue;
    std::memcpy(x_perm + p * hidden, x + int64_t(sorted_slots[p] / top_k) * hidden, size_t(hidden) * sizeof(T));
  }
}

float widen(float v) { return v; }
float widen(uint16_t v) { return host_bf16_to_f32(v); }

template <class T>
void combine(const T* y_perm, const int32_t* slot_pos, const float* weights, const float* shared, float* out,
             int64_t num_tokens, int32_t top_k, int64_t hidden) {
  for (int64_t t = 0; t < num_tokens; ++t) {
    for (int64_t h = 0; h < hidden; ++h) {
      float acc = shared ? shared[t * hidden + h] : 0.0f;
      for (int32_t i = 0; i < top_k; ++i) {
        const int32_t p = slot_pos[t * top_k + i];
        if (p >= 0) acc = std::fma(weights[t * top_k + i], widen(y_perm[int64_t(p) * hidden + h]), acc);
      }
      out[t * hidden + h] = acc;
    }
  }
}

}  // namespace

void moe_gather_ref(const float* x, const int32_t* sorted_slots, float* x_perm, int64_t num_positions, int32_t top_k,
                    int64_t hidden) {
  gather(x, sorted_slots, x_perm, num_positions, top_k, hidden);
}
void moe_gather_ref(const uint16_t* x, const int32_t* sorted_slots, uint16_t* x_perm, int64_t num_positions,
                    int32_t top_k, int64_t hidden) {
  gather(x, sorted_slots, x_perm, num_positions, top_k, hidden);
}
void moe_combine_ref(const float* y_perm, const int32_t* slot_pos, const float* weights, const float* shared,
                     float* out, int64_t num_tokens, int32_t top_k, int64_t hidden) {
  combine(y_perm, slot_pos, weights, shared, out, num_tokens, top_k, hidden);
}
void moe_combine_ref(const uint16_t* y_perm, const int32_t* slot_pos, const float* weights, const float* shared,
                     float* out, int64_t num_tokens, int32_t top_k, int64_t hidden) {
  combine(y_perm, slot_pos, weights, shared, out, num_tokens, top_k, hidden);
}

}  // namespace troupe::kernels
