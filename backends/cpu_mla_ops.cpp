// CpuBackend's DeepSeek-V3 ops: interleaved rope, the MLA latent cache write, MLA paged attention
// (decode tokens in the absorbed form through kernels/mla_decode.hpp's references; prefill chunks
// expanded with kv_b_proj per sequence, as transformers computes it), and the MoE combine. fp32
// throughout; contracts in runtime/backend.hpp.
#include <cmath>
#include <cstring>
#include <limits>

#include "backends/cpu_backend.hpp"
#include "kernels/mla_decode.hpp"
#include "kernels/mla_latent.hpp"
#include "kernels/scatter_rows.hpp"

namespace troupe {

// The formulas of kernels/mla_latent.hpp and scatter_rows.hpp: the kernels' references, so the
// CPU and CUDA backends compute the same thing.
void CpuBackend::rope_interleaved(Tensor x, const Tensor& positions, const Tensor& inv_freq, float scale) {
  const int64_t n = positions.numel(), head_dim = x.size(-1);
  if (n == 0) return;
  kernels::rope_interleaved_ref(x.data<float>(), positions.data<int32_t>(), inv_freq.data<float>(), n,
                                x.numel() / (n * head_dim), head_dim, inv_freq.numel(), scale);
}

void CpuBackend::mla_write_latent(const Tensor& kv_a, const Tensor& norm_weight, float eps, const Tensor& positions,
                                  const Tensor& inv_freq, float scale, const Tensor& slot_mapping, Tensor cache) {
  kernels::mla_write_latent_ref(kv_a.data<float>(), norm_weight.data<float>(), eps, positions.data<int32_t>(),
                                inv_freq.data<float>(), scale, slot_mapping.data<int32_t>(), positions.numel(),
                                norm_weight.numel(), inv_freq.numel(), cache.data<float>());
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
  // Decode tokens (sequences with one new token): absorbed, one (token, head) per work item.
  std::vector<int32_t> decode_tokens, seq_of_token(static_cast<size_t>(n));
  for (int64_t s = 0; s < meta.num_seqs; ++s) {
    for (int32_t t = query_start[s]; t < query_start[s + 1]; ++t) seq_of_token[size_t(t)] = int32_t(s);
    if (query_start[s + 1] - query_start[s] == 1) decode_tokens.push_back(query_start[s]);
  }
  pool_.parallel_for(int64_t(decode_tokens.size()) * num_heads, [&](int64_t b, int64_t e) {
    std::vector<float> q_abs(static_cast<size_t>(entry)), o_lat(static_cast<size_t>(rank));
    for (int64_t item = b; item < e; ++item) {
      const int32_t t = decode_tokens[size_t(item / num_heads)];
      const int64_t h = item % num_heads;
      const float* qh = qp + (t * num_heads + h) * qk_dim;
      float* oh = op + (t * num_heads + h) * v_dim;
      auto run = [&](const auto* w) {  // head h's rows of kv_b_proj: [W_UK_h | W_UV_h]
        const auto* w_h = w + h * per_head * rank;
        kernels::mla_absorb_q_ref(qh, w_h, q_abs.data(), 1, 1, nope, rope_dim, rank, v_dim);
        kernels::mla_decode_ref(q_abs.data(), cp, meta.positions.data<int32_t>(), seq_of_token.data(), &t, 1, tables,
                                meta.max_blocks_per_seq, block_size, 1, rank, rope_dim, scale, o_lat.data());
        kernels::mla_unabsorb_out_ref(o_lat.data(), w_h, oh, 1, 1, nope, rank, v_dim);
      };
      if (kv_b_weight.dtype() == DType::bf16) {
        run(kv_b_weight.data<uint16_t>());
      } else {
        run(kv_b_weight.data<float>());
      }
    }
  }, 1);
  for (int64_t s = 0; s < meta.num_seqs; ++s) {
    const int64_t ctx = context_lens[s], begin = query_start[s], num_new = query_start[s + 1] - begin;
    if (num_new <= 1) continue;  // decode tokens are done
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
  kernels::add_rows_scaled_ref(x.data<float>(), rows.data(), weights.data(), out.data<float>(), int64_t(rows.size()),
                               out.size(-1));
}

}  // namespace troupe
