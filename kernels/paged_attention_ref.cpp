#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/host_bf16.hpp"
#include "kernels/host_fp8.hpp"
#include "kernels/paged_attention.hpp"

namespace troupe::kernels {
namespace {

// A cache element as fp32; `s` is an fp8 cache's per-tensor scale (fp32 and bf16 have none).
float widen(float v, float) { return v; }
float widen(uint16_t bits, float) { return host_bf16_to_f32(bits); }
float widen(uint8_t bits, float s) { return host_e4m3_to_f32(bits) * s; }

// The formula of every attention kernel: fp32 scores scale * (q . k), a softmax over [0, position]
// with fp64 sums, fp64 weighted sum of v. An fp8 cache's elements are dequantized first.
template <typename CacheT>
void attention(const float* q, const CacheT* k_cache, const CacheT* v_cache, const int32_t* positions,
               const int32_t* seq_of_token, const int32_t* block_tables, int64_t max_blocks, int64_t block_size,
               int64_t n, int64_t num_heads, int64_t num_kv_heads, int64_t head_dim, float scale, float* out,
               float k_scale = 1.0f, float v_scale = 1.0f) {
  const int64_t group = num_heads / num_kv_heads;
  std::vector<float> scores;
  std::vector<double> acc(static_cast<size_t>(head_dim));
  for (int64_t t = 0; t < n; ++t) {
    const int32_t* table = block_tables + int64_t(seq_of_token[t]) * max_blocks;
    const int64_t last = positions[t];
    scores.assign(size_t(last + 1), 0.0f);
    for (int64_t h = 0; h < num_heads; ++h) {
      const int64_t kv_h = h / group;
      const float* qh = q + (t * num_heads + h) * head_dim;
      auto row = [&](const CacheT* cache, int64_t j) {
        const int64_t slot = int64_t(table[j / block_size]) * block_size + j % block_size;
        return cache + (slot * num_kv_heads + kv_h) * head_dim;
      };
      float max_score = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j <= last; ++j) {
        const CacheT* kj = row(k_cache, j);
        float dot = 0.0f;
        for (int64_t d = 0; d < head_dim; ++d) dot += qh[d] * widen(kj[d], k_scale);
        scores[size_t(j)] = dot * scale;
        max_score = std::max(max_score, scores[size_t(j)]);
      }
      double denom = 0.0;
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t j = 0; j <= last; ++j) {
        const double p = std::exp(double(scores[size_t(j)] - max_score));
        denom += p;
        const CacheT* vj = row(v_cache, j);
        for (int64_t d = 0; d < head_dim; ++d) acc[size_t(d)] += p * double(widen(vj[d], v_scale));
      }
      float* oh = out + (t * num_heads + h) * head_dim;
      for (int64_t d = 0; d < head_dim; ++d) oh[d] = float(acc[size_t(d)] / denom);
    }
  }
}

}  // namespace

void paged_attention_ref(const float* q, const float* k_cache, const float* v_cache, const int32_t* positions,
                         const int32_t* seq_of_token, const int32_t* block_tables, int64_t max_blocks,
                         int64_t block_size, int64_t n, int64_t num_heads, int64_t num_kv_heads, int64_t head_dim,
                         float scale, float* out) {
  attention(q, k_cache, v_cache, positions, seq_of_token, block_tables, max_blocks, block_size, n, num_heads,
            num_kv_heads, head_dim, scale, out);
}

void paged_attention_ref(const float* q, const uint16_t* k_cache, const uint16_t* v_cache, const int32_t* positions,
                         const int32_t* seq_of_token, const int32_t* block_tables, int64_t max_blocks,
                         int64_t block_size, int64_t n, int64_t num_heads, int64_t num_kv_heads, int64_t head_dim,
                         float scale, float* out) {
  attention(q, k_cache, v_cache, positions, seq_of_token, block_tables, max_blocks, block_size, n, num_heads,
            num_kv_heads, head_dim, scale, out);
}

void paged_attention_ref(const float* q, const uint8_t* k_cache, const uint8_t* v_cache, const int32_t* positions,
                         const int32_t* seq_of_token, const int32_t* block_tables, int64_t max_blocks,
                         int64_t block_size, int64_t n, int64_t num_heads, int64_t num_kv_heads, int64_t head_dim,
                         float scale, float k_scale, float v_scale, float* out) {
  attention(q, k_cache, v_cache, positions, seq_of_token, block_tables, max_blocks, block_size, n, num_heads,
            num_kv_heads, head_dim, scale, out, k_scale, v_scale);
}

}  // namespace troupe::kernels
