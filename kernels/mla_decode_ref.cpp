#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/host_bf16.hpp"
#include "kernels/mla_decode.hpp"

namespace troupe::kernels {
namespace {

float widen(float v) { return v; }
float widen(uint16_t bits) { return host_bf16_to_f32(bits); }

// fp32 scores scale * (q_abs . entry_j) over [latent | k_pe], a softmax over [0, position] with
// fp64 sums, the fp64 weighted sum of the latents.
template <typename CacheT>
void decode(const float* q_abs, const CacheT* cache, const int32_t* positions, const int32_t* seq_of_token,
            const int32_t* tokens, int64_t num_tokens, const int32_t* block_tables, int64_t max_blocks,
            int64_t block_size, int64_t num_heads, int64_t kv_lora, int64_t rope, float scale, float* o_lat) {
  const int64_t entry = kv_lora + rope;
  std::vector<float> scores;
  std::vector<double> acc(static_cast<size_t>(kv_lora));
  for (int64_t i = 0; i < num_tokens; ++i) {
    const int64_t t = tokens ? tokens[i] : i;
    const int32_t* table = block_tables + int64_t(seq_of_token[t]) * max_blocks;
    const int64_t last = positions[t];
    auto row = [&](int64_t j) { return cache + (int64_t(table[j / block_size]) * block_size + j % block_size) * entry; };
    scores.assign(size_t(last + 1), 0.0f);
    for (int64_t h = 0; h < num_heads; ++h) {
      const float* qh = q_abs + (i * num_heads + h) * entry;
      float max_score = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j <= last; ++j) {
        const CacheT* e = row(j);
        float dot = 0.0f;
        for (int64_t d = 0; d < entry; ++d) dot += qh[d] * widen(e[d]);
        scores[size_t(j)] = dot * scale;
        max_score = std::max(max_score, scores[size_t(j)]);
      }
      double denom = 0.0;
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t j = 0; j <= last; ++j) {
        const double p = std::exp(double(scores[size_t(j)] - max_score));
        denom += p;
        const CacheT* e = row(j);
        for (int64_t c = 0; c < kv_lora; ++c) acc[size_t(c)] += p * double(widen(e[c]));
      }
      float* oh = o_lat + (i * num_heads + h) * kv_lora;
      for (int64_t c = 0; c < kv_lora; ++c) oh[c] = float(acc[size_t(c)] / denom);
    }
  }
}

template <typename W>
void absorb_q(const float* q, const W* w, float* q_abs, int64_t n, int64_t num_heads, int64_t nope, int64_t rope,
              int64_t kv_lora, int64_t v_dim) {
  const int64_t entry = kv_lora + rope, qk = nope + rope;
  std::vector<float> acc(static_cast<size_t>(kv_lora));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t h = 0; h < num_heads; ++h) {
      const float* qh = q + (i * num_heads + h) * qk;
      const W* w_uk = w + h * (nope + v_dim) * kv_lora;  // [nope, kv_lora]
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t d = 0; d < nope; ++d)
        for (int64_t c = 0; c < kv_lora; ++c) acc[size_t(c)] += qh[d] * widen(w_uk[d * kv_lora + c]);
      float* dst = q_abs + (i * num_heads + h) * entry;
      std::copy(acc.begin(), acc.end(), dst);
      std::copy(qh + nope, qh + qk, dst + kv_lora);
    }
  }
}

template <typename W>
void unabsorb_out(const float* o_lat, const W* w, float* out, int64_t n, int64_t num_heads, int64_t nope,
                  int64_t kv_lora, int64_t v_dim) {
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t h = 0; h < num_heads; ++h) {
      const float* o = o_lat + (i * num_heads + h) * kv_lora;
      const W* w_uv = w + (h * (nope + v_dim) + nope) * kv_lora;  // [v_dim, kv_lora]
      for (int64_t c = 0; c < v_dim; ++c) {
        float sum = 0.0f;
        for (int64_t k = 0; k < kv_lora; ++k) sum += widen(w_uv[c * kv_lora + k]) * o[k];
        out[(i * num_heads + h) * v_dim + c] = sum;
      }
    }
  }
}

}  // namespace

void mla_decode_ref(const float* q_abs, const float* cache, const int32_t* positions, const int32_t* seq_of_token,
                    const int32_t* tokens, int64_t num_tokens, const int32_t* block_tables, int64_t max_blocks,
                    int64_t block_size, int64_t num_heads, int64_t kv_lora, int64_t rope, float scale, float* o_lat) {
  decode(q_abs, cache, positions, seq_of_token, tokens, num_tokens, block_tables, max_blocks, block_size, num_heads,
         kv_lora, rope, scale, o_lat);
}

void mla_decode_ref(const float* q_abs, const uint16_t* cache, const int32_t* positions, const int32_t* seq_of_token,
                    const int32_t* tokens, int64_t num_tokens, const int32_t* block_tables, int64_t max_blocks,
                    int64_t block_size, int64_t num_heads, int64_t kv_lora, int64_t rope, float scale, float* o_lat) {
  decode(q_abs, cache, positions, seq_of_token, tokens, num_tokens, block_tables, max_blocks, block_size, num_heads,
         kv_lora, rope, scale, o_lat);
}

void mla_absorb_q_ref(const float* q, const float* kv_b_weight, float* q_abs, int64_t n, int64_t num_heads,
                      int64_t nope, int64_t rope, int64_t kv_lora, int64_t v_dim) {
  absorb_q(q, kv_b_weight, q_abs, n, num_heads, nope, rope, kv_lora, v_dim);
}

void mla_absorb_q_ref(const float* q, const uint16_t* kv_b_weight, float* q_abs, int64_t n, int64_t num_heads,
                      int64_t nope, int64_t rope, int64_t kv_lora, int64_t v_dim) {
  absorb_q(q, kv_b_weight, q_abs, n, num_heads, nope, rope, kv_lora, v_dim);
}

void mla_unabsorb_out_ref(const float* o_lat, const float* kv_b_weight, float* out, int64_t n, int64_t num_heads,
                          int64_t nope, int64_t kv_lora, int64_t v_dim) {
  unabsorb_out(o_lat, kv_b_weight, out, n, num_heads, nope, kv_lora, v_dim);
}

void mla_unabsorb_out_ref(const float* o_lat, const uint16_t* kv_b_weight, float* out, int64_t n, int64_t num_heads,
                          int64_t nope, int64_t kv_lora, int64_t v_dim) {
  unabsorb_out(o_lat, kv_b_weight, out, n, num_heads, nope, kv_lora, v_dim);
}

}  // namespace troupe::kernels
