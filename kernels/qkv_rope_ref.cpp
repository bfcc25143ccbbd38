#include <cmath>
#include <vector>

#include "kernels/host_bf16.hpp"
#include "kernels/host_fp8.hpp"
#include "kernels/qkv_rope.hpp"

namespace troupe::kernels {
namespace {

// A cache (or q_out) element; `scale` is an fp8 cache's (fp32 and bf16 are stored unscaled).
void put(float* p, float v, float) { *p = v; }
void put(uint16_t* p, float v, float) { *p = host_f32_to_bf16(v); }
void put(uint8_t* p, float v, float scale) { *p = host_f32_to_e4m3(v / scale); }

// CpuBackend::rmsnorm's formula for one head: an fp64 sum of squares, 1 / sqrt in fp64 rounded
// to fp32, then x * inv * w in fp32. `normed` is [head_dim] scratch.
const float* norm_head(const float* x, const float* weight, float eps, int64_t head_dim, float* normed) {
  if (!weight) return x;
  double sum_sq = 0.0;
  for (int64_t i = 0; i < head_dim; ++i) sum_sq += double(x[i]) * double(x[i]);
  const float inv = float(1.0 / std::sqrt(sum_sq / double(head_dim) + double(eps)));
  for (int64_t i = 0; i < head_dim; ++i) normed[i] = x[i] * inv * weight[i];
  return normed;
}

// rope.hpp's formula: an fp32 angle, cos/sin in double rounded to fp32, rotate_half on the first
// 2 * half dims, the rest copied; q and k heads normed first where `norms` has their weight.
template <typename CacheT>
void qkv_rope(const float* qkv, const int32_t* positions, const float* inv_freq, const int32_t* slot_mapping,
              CacheT* k_cache, CacheT* v_cache, float* q_out, int64_t n, int64_t num_heads, int64_t num_kv_heads,
              int64_t head_dim, int64_t half, HeadNorms norms, float k_scale = 1.0f, float v_scale = 1.0f) {
  const int64_t row_elems = (num_heads + 2 * num_kv_heads) * head_dim, kv_entry = num_kv_heads * head_dim;
  std::vector<float> cos_v(static_cast<size_t>(half)), sin_v(static_cast<size_t>(half));
  std::vector<float> normed(static_cast<size_t>(head_dim));
  auto rotate = [&](const float* head, const float* weight, auto* out, float scale) {
    const float* in = norm_head(head, weight, norms.eps, head_dim, normed.data());
    for (int64_t i = 0; i < half; ++i) {
      const float x1 = in[i], x2 = in[i + half];
      put(out + i, x1 * cos_v[size_t(i)] - x2 * sin_v[size_t(i)], scale);
      put(out + i + half, x2 * cos_v[size_t(i)] + x1 * sin_v[size_t(i)], scale);
    }
    for (int64_t i = 2 * half; i < head_dim; ++i) put(out + i, in[i], scale);
  };
  for (int64_t t = 0; t < n; ++t) {
    const float pos = float(positions[t]);
    for (int64_t i = 0; i < half; ++i) {
      const float angle = pos * inv_freq[i];
      cos_v[size_t(i)] = float(std::cos(double(angle)));
      sin_v[size_t(i)] = float(std::sin(double(angle)));
    }
    const float* row = qkv + t * row_elems;  // [q heads | k heads | v heads]
    const int64_t slot = slot_mapping[t];
    for (int64_t h = 0; h < num_heads; ++h)
      rotate(row + h * head_dim, norms.q_weight, q_out + (t * num_heads + h) * head_dim, 1.0f);
    const float* k = row + num_heads * head_dim;
    for (int64_t h = 0; h < num_kv_heads; ++h)
      rotate(k + h * head_dim, norms.k_weight, k_cache + slot * kv_entry + h * head_dim, k_scale);
    for (int64_t i = 0; i < kv_entry; ++i) put(v_cache + slot * kv_entry + i, k[kv_entry + i], v_scale);
  }
}

}  // namespace

void qkv_rope_write_kv_ref(const float* qkv, const int32_t* positions, const float* inv_freq,
                           const int32_t* slot_mapping, float* k_cache, float* v_cache, float* q_out, int64_t n,
                           int64_t num_heads, int64_t num_kv_heads, int64_t head_dim, int64_t half,
                           HeadNorms norms) {
  qkv_rope(qkv, positions, inv_freq, slot_mapping, k_cache, v_cache, q_out, n, num_heads, num_kv_heads, head_dim,
           half, norms);
}

void qkv_rope_write_kv_ref(const float* qkv, const int32_t* positions, const float* inv_freq,
                           const int32_t* slot_mapping, uint16_t* k_cache, uint16_t* v_cache, float* q_out, int64_t n,
                           int64_t num_heads, int64_t num_kv_heads, int64_t head_dim, int64_t half,
                           HeadNorms norms) {
  qkv_rope(qkv, positions, inv_freq, slot_mapping, k_cache, v_cache, q_out, n, num_heads, num_kv_heads, head_dim,
           half, norms);
}

void qkv_rope_write_kv_ref(const float* qkv, const int32_t* positions, const float* inv_freq,
                           const int32_t* slot_mapping, uint8_t* k_cache, uint8_t* v_cache, float* q_out, int64_t n,
                           int64_t num_heads, int64_t num_kv_heads, int64_t head_dim, int64_t half, float k_scale,
                           float v_scale, HeadNorms norms) {
  qkv_rope(qkv, positions, inv_freq, slot_mapping, k_cache, v_cache, q_out, n, num_heads, num_kv_heads, head_dim,
           half, norms, k_scale, v_scale);
}

}  // namespace troupe::kernels
