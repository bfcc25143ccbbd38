#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/host_bf16.hpp"
#include "kernels/mla_prefill.hpp"

namespace troupe::kernels {
namespace {

float widen(float v) { return v; }
float widen(uint16_t bits) { return host_bf16_to_f32(bits); }

template <typename CacheT>
void gather(const CacheT* cache, const int32_t* table, int64_t block_size, int64_t ctx, int64_t kv_lora,
            int64_t rope, float* latent, float* k_pe) {
  const int64_t entry = kv_lora + rope;
  for (int64_t j = 0; j < ctx; ++j) {
    const CacheT* e = cache + (int64_t(table[j / block_size]) * block_size + j % block_size) * entry;
    for (int64_t c = 0; c < kv_lora; ++c) latent[j * kv_lora + c] = widen(e[c]);
    for (int64_t c = 0; c < rope; ++c) k_pe[j * rope + c] = widen(e[kv_lora + c]);
  }
}

}  // namespace

void mla_gather_latent_ref(const float* cache, const int32_t* table, int64_t block_size, int64_t ctx,
                           int64_t kv_lora, int64_t rope, float* latent, float* k_pe) {
  gather(cache, table, block_size, ctx, kv_lora, rope, latent, k_pe);
}

void mla_gather_latent_ref(const uint16_t* cache, const int32_t* table, int64_t block_size, int64_t ctx,
                           int64_t kv_lora, int64_t rope, float* latent, float* k_pe) {
  gather(cache, table, block_size, ctx, kv_lora, rope, latent, k_pe);
}

void mla_prefill_attention_ref(const float* q, const float* kv, const float* k_pe, int64_t num_new, int64_t ctx,
                               int64_t num_heads, int64_t nope, int64_t rope, int64_t v_dim, float scale, float* out) {
  const int64_t qk = nope + rope, per_head = nope + v_dim, row = num_heads * per_head;
  std::vector<float> scores(static_cast<size_t>(ctx));
  std::vector<double> acc(static_cast<size_t>(v_dim));
  for (int64_t i = 0; i < num_new; ++i) {
    const int64_t last = ctx - num_new + i;
    for (int64_t h = 0; h < num_heads; ++h) {
      const float* qh = q + (i * num_heads + h) * qk;
      float max_score = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j <= last; ++j) {
        const float* kj = kv + j * row + h * per_head;
        float dot = 0.0f;
        for (int64_t d = 0; d < nope; ++d) dot += qh[d] * kj[d];
        for (int64_t d = 0; d < rope; ++d) dot += qh[nope + d] * k_pe[j * rope + d];
        scores[size_t(j)] = dot * scale;
        max_score = std::max(max_score, scores[size_t(j)]);
      }
      double denom = 0.0;
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t j = 0; j <= last; ++j) {
        const double p = std::exp(double(scores[size_t(j)] - max_score));
        denom += p;
        const float* vj = kv + j * row + h * per_head + nope;
        for (int64_t c = 0; c < v_dim; ++c) acc[size_t(c)] += p * double(vj[c]);
      }
      float* oh = out + (i * num_heads + h) * v_dim;
      for (int64_t c = 0; c < v_dim; ++c) oh[c] = float(acc[size_t(c)] / denom);
    }
  }
}

}  // namespace troupe::kernels
