// CpuBackend's DeepSeek-V3 ops: interleaved rope, the MLA latent cache write, MLA paged attention
// (the cached latents expanded with kv_b_proj per sequence, as transformers computes it), and the
// MoE combine. fp32 throughout; contracts in runtime/backend.hpp.
#include <cmath>
#include <cstring>
#include <limits>

#include "backends/cpu_backend.hpp"

namespace troupe {

namespace {

// cos/sin of one position, times scale (fp32 angle, as transformers computes it).
void cos_sin(int32_t pos, const float* inv_freq, int64_t half, float scale, float* cos_v, float* sin_v) {
  for (int64_t i = 0; i < half; ++i) {
    const float angle = float(pos) * inv_freq[i];
    cos_v[i] = float(std::cos(double(angle))) * scale;
    sin_v[i] = float(std::sin(double(angle))) * scale;
  }
}

// r: 2 * half values, rotated in place (see Backend::rope_interleaved).
void rotate_interleaved(float* r, const float* cos_v, const float* sin_v, int64_t half, float* tmp) {
  for (int64_t i = 0; i < half; ++i) {
    const float even = r[2 * i], odd = r[2 * i + 1];
    tmp[i] = even * cos_v[i] - odd * sin_v[i];
    tmp[half + i] = odd * cos_v[i] + even * sin_v[i];
  }
  std::memcpy(r, tmp, size_t(2 * half) * sizeof(float));
}

}  // namespace

void CpuBackend::rope_interleaved(Tensor x, const Tensor& positions, const Tensor& inv_freq, float scale) {
  const int64_t n = positions.numel(), half = inv_freq.numel(), head_dim = x.size(-1);
  if (n == 0) return;
  const int64_t num_heads = x.numel() / (n * head_dim);
  const int32_t* pos = positions.data<int32_t>();
  const float* freq = inv_freq.data<float>();
  float* xp = x.data<float>();
  for (int64_t t = 0; t < n; ++t) {
    std::vector<float> c(static_cast<size_t>(half)), s(static_cast<size_t>(half)), tmp(static_cast<size_t>(2 * half));
    cos_sin(pos[t], freq, half, scale, c.data(), s.data());
    for (int64_t h = 0; h < num_heads; ++h)
      rotate_interleaved(xp + (t * num_heads + h) * head_dim + head_dim - 2 * half, c.data(), s.data(), half, tmp.data());
  }
}

void CpuBackend::mla_write_latent(const Tensor& kv_a, const Tensor& norm_weight, float eps, const Tensor& positions,
                                  const Tensor& inv_freq, float scale, const Tensor& slot_mapping, Tensor cache) {
  const int64_t n = positions.numel(), half = inv_freq.numel(), entry = kv_a.size(-1), rank = entry - 2 * half;
  const int32_t* pos = positions.data<int32_t>();
  const int32_t* slots = slot_mapping.data<int32_t>();
  const float* src = kv_a.data<float>();
  const float* w = norm_weight.data<float>();
  float* dst = cache.data<float>();
  std::vector<float> c(static_cast<size_t>(half)), s(static_cast<size_t>(half)), tmp(static_cast<size_t>(2 * half));
  for (int64_t t = 0; t < n; ++t) {
    const float* row = src + t * entry;
    float* out = dst + int64_t(slots[t]) * entry;
    double sum_sq = 0.0;
    for (int64_t i = 0; i < rank; ++i) sum_sq += double(row[i]) * double(row[i]);
    const float inv = float(1.0 / std::sqrt(sum_sq / double(rank) + double(eps)));
    for (int64_t i = 0; i < rank; ++i) out[i] = row[i] * inv * w[i];
    std::memcpy(out + rank, row + rank, size_t(2 * half) * sizeof(float));
    cos_sin(pos[t], inv_freq.data<float>(), half, scale, c.data(), s.data());
    rotate_interleaved(out + rank, c.data(), s.data(), half, tmp.data());
  }
}

void CpuBackend::mla_paged_attention(const Tensor& q, const Tensor& cache, const Tensor& kv_b_weight,
                                     const AttentionMetadata& meta, float scale, Tensor out) {
  const int64_t n = meta.num_tokens;
  if (n == 0) return;
  const int64_t num_heads = q.size(1), qk_dim = q.size(2), v_dim = out.size(2);
  const int64_t entry = cache.size(-1), rank = kv_b_weight.size(1), rope_dim = entry - rank;
  const int64_t nope = qk_dim - rope_dim, per_head = nope + v_dim, block_size = meta.block_size;
  const int32_t* query_start = meta.query_start.data<int32_t>();
  const int32_t* context_lens = meta.context_lens.data<int32_t>();
  const int32_t* tables = meta.block_tables.data<int32_t>();
  const float* qp = q.data<float>();
  const float* cp = cache.data<float>();
  float* op = out.data<float>();
  for (int64_t s = 0; s < meta.num_seqs; ++s) {
    const int64_t ctx = context_lens[s], begin = query_start[s], num_new = query_start[s + 1] - begin;
    if (num_new == 0) continue;
    const int32_t* table = tables + s * meta.max_blocks_per_seq;
    // The sequence's cached tokens: latents [ctx, rank] and k_pe [ctx, rope_dim], then per head
    // [k_nope | v] = kv_b_proj(latent): [ctx, num_heads * per_head].
    Tensor latent = Tensor::empty(DType::f32, {ctx, rank});
    std::vector<float> k_pe(static_cast<size_t>(ctx * rope_dim));
    for (int64_t j = 0; j < ctx; ++j) {
      const float* e = cp + (int64_t(table[j / block_size]) * block_size + j % block_size) * entry;
      std::memcpy(latent.data<float>() + j * rank, e, size_t(rank) * sizeof(float));
      std::memcpy(k_pe.data() + j * rope_dim, e + rank, size_t(rope_dim) * sizeof(float));
    }
    Tensor kv = Tensor::empty(DType::f32, {ctx, num_heads * per_head});
    linear(latent, kv_b_weight, Tensor(), kv);
    const float* kvp = kv.data<float>();
    pool_.parallel_for(num_new * num_heads, [&](int64_t b, int64_t e) {
      std::vector<float> scores(static_cast<size_t>(ctx));
      std::vector<double> acc(static_cast<size_t>(v_dim));
      for (int64_t item = b; item < e; ++item) {
        const int64_t i = item / num_heads, h = item % num_heads, t = begin + i;
        const int64_t pos = ctx - num_new + i;
        const float* qh = qp + (t * num_heads + h) * qk_dim;
        float max_score = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j <= pos; ++j) {
          const float* kj = kvp + j * num_heads * per_head + h * per_head;
          const float* pe = k_pe.data() + j * rope_dim;
          float dot = 0.0f;
          for (int64_t d = 0; d < nope; ++d) dot += qh[d] * kj[d];
          for (int64_t d = 0; d < rope_dim; ++d) dot += qh[nope + d] * pe[d];
          scores[size_t(j)] = dot * scale;
          max_score = std::max(max_score, scores[size_t(j)]);
        }
        double denom = 0.0;
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t j = 0; j <= pos; ++j) {
          const double p = std::exp(double(scores[size_t(j)] - max_score));
          denom += p;
          const float* vj = kvp + j * num_heads * per_head + h * per_head + nope;
          for (int64_t d = 0; d < v_dim; ++d) acc[size_t(d)] += p * double(vj[d]);
        }
        float* oh = op + (t * num_heads + h) * v_dim;
        for (int64_t d = 0; d < v_dim; ++d) oh[d] = float(acc[size_t(d)] / denom);
      }
    }, 1);
  }
}

void CpuBackend::add_rows_scaled(const Tensor& x, const std::vector<int32_t>& rows, const std::vector<float>& weights,
                                 Tensor out) {
  const int64_t d = out.size(-1);
  const float* src = x.data<float>();
  float* dst = out.data<float>();
  for (size_t i = 0; i < rows.size(); ++i) {
    float* o = dst + int64_t(rows[i]) * d;
    const float* r = src + int64_t(i) * d;
    for (int64_t k = 0; k < d; ++k) o[k] += weights[i] * r[k];
  }
}

}  // namespace troupe
