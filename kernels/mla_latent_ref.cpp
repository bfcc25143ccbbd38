#include <cmath>
#include <vector>

#include "kernels/host_bf16.hpp"
#include "kernels/mla_latent.hpp"

namespace troupe::kernels {
namespace {

void store(float* p, float v) { *p = v; }
void store(uint16_t* p, float v) { *p = host_f32_to_bf16(v); }

void cos_sin(int32_t pos, const float* inv_freq, int64_t half, float scale, float* c, float* s) {
  for (int64_t i = 0; i < half; ++i) {
    const float angle = float(pos) * inv_freq[i];
    c[i] = float(std::cos(double(angle))) * scale;
    s[i] = float(std::sin(double(angle))) * scale;
  }
}

template <typename CacheT>
void write_latent(const float* kv_a, const float* w, float eps, const int32_t* positions, const float* inv_freq,
                  float scale, const int32_t* slots, int64_t n, int64_t kv_lora, int64_t half, CacheT* cache) {
  const int64_t entry = kv_lora + 2 * half;
  std::vector<float> c(static_cast<size_t>(half)), s(static_cast<size_t>(half));
  for (int64_t t = 0; t < n; ++t) {
    const float* row = kv_a + t * entry;
    CacheT* out = cache + int64_t(slots[t]) * entry;
    double sum_sq = 0.0;
    for (int64_t i = 0; i < kv_lora; ++i) sum_sq += double(row[i]) * row[i];
    const float inv = 1.0f / std::sqrt(float(sum_sq / double(kv_lora)) + eps);
    for (int64_t i = 0; i < kv_lora; ++i) store(out + i, row[i] * inv * w[i]);
    cos_sin(positions[t], inv_freq, half, scale, c.data(), s.data());
    const float* r = row + kv_lora;
    for (int64_t i = 0; i < half; ++i) {
      store(out + kv_lora + i, r[2 * i] * c[size_t(i)] - r[2 * i + 1] * s[size_t(i)]);
      store(out + kv_lora + half + i, r[2 * i + 1] * c[size_t(i)] + r[2 * i] * s[size_t(i)]);
    }
  }
}

}  // namespace

void rope_interleaved_ref(float* x, const int32_t* positions, const float* inv_freq, int64_t n, int64_t num_heads,
                          int64_t head_dim, int64_t half, float scale) {
  std::vector<float> c(static_cast<size_t>(half)), s(static_cast<size_t>(half)), tmp(static_cast<size_t>(2 * half));
  for (int64_t t = 0; t < n; ++t) {
    cos_sin(positions[t], inv_freq, half, scale, c.data(), s.data());
    for (int64_t h = 0; h < num_heads; ++h) {
      float* r = x + (t * num_heads + h) * head_dim + head_dim - 2 * half;
      for (int64_t i = 0; i < half; ++i) {
        tmp[size_t(i)] = r[2 * i] * c[size_t(i)] - r[2 * i + 1] * s[size_t(i)];
        tmp[size_t(half + i)] = r[2 * i + 1] * c[size_t(i)] + r[2 * i] * s[size_t(i)];
      }
      for (int64_t i = 0; i < 2 * half; ++i) r[i] = tmp[size_t(i)];
    }
  }
}

void mla_write_latent_ref(const float* kv_a, const float* norm_weight, float eps, const int32_t* positions,
                          const float* inv_freq, float scale, const int32_t* slots, int64_t n, int64_t kv_lora,
                          int64_t half, float* cache) {
  write_latent(kv_a, norm_weight, eps, positions, inv_freq, scale, slots, n, kv_lora, half, cache);
}

void mla_write_latent_ref(const float* kv_a, const float* norm_weight, float eps, const int32_t* positions,
                          const float* inv_freq, float scale, const int32_t* slots, int64_t n, int64_t kv_lora,
                          int64_t half, uint16_t* cache) {
  write_latent(kv_a, norm_weight, eps, positions, inv_freq, scale, slots, n, kv_lora, half, cache);
}

}  // namespace troupe::kernels
