#include "kernels/host_bf16.hpp"
#include "kernels/mla_absorb.hpp"

namespace troupe::kernels {
namespace {

// The value the kernels multiply: x rounded to bf16 (nearest even), as f32_to_bf16 rounds it.
double rounded(float x) { return double(host_bf16_to_f32(host_f32_to_bf16(x))); }

}  // namespace

void mla_absorb_q_bf16_ref(const float* q, const int32_t* tokens, const uint16_t* weight, double* q_abs, int64_t n,
                           int64_t num_heads, int64_t nope, int64_t rope, int64_t kv_lora, int64_t v_dim) {
  const int64_t qk = nope + rope, entry = kv_lora + rope;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t t = tokens ? tokens[i] : i;
    for (int64_t h = 0; h < num_heads; ++h) {
      const float* qh = q + (t * num_heads + h) * qk;
      const uint16_t* w_uk = weight + h * (nope + v_dim) * kv_lora;  // [nope, kv_lora]
      double* dst = q_abs + (i * num_heads + h) * entry;
      for (int64_t c = 0; c < kv_lora; ++c) {
        double sum = 0.0;
        for (int64_t k = 0; k < nope; ++k) sum += rounded(qh[k]) * double(host_bf16_to_f32(w_uk[k * kv_lora + c]));
        dst[c] = sum;
      }
      for (int64_t r = 0; r < rope; ++r) dst[kv_lora + r] = double(qh[nope + r]);
    }
  }
}

void mla_unabsorb_out_bf16_ref(const float* o_lat, const int32_t* tokens, const uint16_t* weight, double* out,
                               int64_t n, int64_t num_heads, int64_t nope, int64_t kv_lora, int64_t v_dim) {
  for (int64_t i = 0; i < n; ++i) {
    const int64_t t = tokens ? tokens[i] : i;
    for (int64_t h = 0; h < num_heads; ++h) {
      const float* o = o_lat + (i * num_heads + h) * kv_lora;
      const uint16_t* w_uv = weight + (h * (nope + v_dim) + nope) * kv_lora;  // [v_dim, kv_lora]
      for (int64_t c = 0; c < v_dim; ++c) {
        double sum = 0.0;
        for (int64_t j = 0; j < kv_lora; ++j) sum += rounded(o[j]) * double(host_bf16_to_f32(w_uv[c * kv_lora + j]));
        out[(t * num_heads + h) * v_dim + c] = sum;
      }
    }
  }
}

}  // namespace troupe::kernels
