#include <cmath>

#include "kernels/elementwise.hpp"
#include "kernels/host_bf16.hpp"

namespace troupe::kernels {
namespace {

float silu_mul(float gate, float up) { return gate / (1.0f + std::exp(-gate)) * up; }

}  // namespace

void silu_and_mul_ref(const float* gate, const float* up, float* out, int64_t count) {
  for (int64_t i = 0; i < count; ++i) out[i] = silu_mul(gate[i], up[i]);
}

void silu_and_mul_packed_ref(const float* gate_up, float* out, int64_t n, int64_t inter) {
  for (int64_t t = 0; t < n; ++t)
    for (int64_t c = 0; c < inter; ++c)
      out[t * inter + c] = silu_mul(gate_up[t * 2 * inter + c], gate_up[t * 2 * inter + inter + c]);
}

void silu_and_mul_packed_ref(const float* gate_up, uint16_t* out, int64_t n, int64_t inter) {
  for (int64_t t = 0; t < n; ++t)
    for (int64_t c = 0; c < inter; ++c)
      out[t * inter + c] = host_f32_to_bf16(silu_mul(gate_up[t * 2 * inter + c], gate_up[t * 2 * inter + inter + c]));
}

void add_ref(const float* a, const float* b, float* out, int64_t count) {
  for (int64_t i = 0; i < count; ++i) out[i] = a[i] + b[i];
}

void add_bias_ref(float* out, const float* bias, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) out[r * cols + c] += bias[c];
}

void bf16_to_f32_ref(const uint16_t* x, float* out, int64_t count) {
  for (int64_t i = 0; i < count; ++i) out[i] = host_bf16_to_f32(x[i]);
}

void f32_to_bf16_ref(const float* x, uint16_t* out, int64_t count) {
  for (int64_t i = 0; i < count; ++i) out[i] = host_f32_to_bf16(x[i]);
}

}  // namespace troupe::kernels
