#include "backends/cpu_backend.hpp"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <new>
#include <vector>

#include "kernels/host_fp8.hpp"
#include "kernels/kv_write.hpp"
#include "kernels/qkv_rope.hpp"

namespace troupe {

namespace {
// Rows per chunk so that each chunk does at least ~16k element operations.
int64_t min_rows(int64_t row_elems) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, row_elems)); }

void rmsnorm_row(const float* x, const float* w, float eps, int64_t hidden, float* out) {
  double sum_sq = 0.0;
  for (int64_t i = 0; i < hidden; ++i) sum_sq += double(x[i]) * double(x[i]);
  const float inv = float(1.0 / std::sqrt(sum_sq / double(hidden) + double(eps)));
  for (int64_t i = 0; i < hidden; ++i) out[i] = x[i] * inv * w[i];
}
}  // namespace

CpuBackend::CpuBackend(int64_t num_threads, bool keep_bf16_weights)
    : pool_(num_threads), keep_bf16_weights_(keep_bf16_weights) {
  openblas_set_num_threads(int(pool_.num_threads()));
}

Tensor CpuBackend::empty(DType dtype, std::vector<int64_t> shape) { return Tensor::empty(dtype, std::move(shape)); }

Result<Tensor> CpuBackend::upload_weight(const Tensor& host) {
  if (host.device() != Device::cpu) return make_error(ErrorCode::unsupported, "cpu backend: weight not on the host");
  if (host.dtype() == DType::f32) return host;
  if (host.dtype() == DType::bf16 && keep_bf16_weights_ && host.dim() == 2) return host;
  float probe = 0;
  if (!convert_to_f32(host.dtype(), host.raw(), 0, &probe)) {
    return make_error(ErrorCode::unsupported,
                      "cpu backend: cannot convert dtype " + std::string(dtype_name(host.dtype())) + " to f32");
  }
  // Widened on the pool's threads: a load converts every weight once.
  Tensor out = Tensor::empty(DType::f32, host.shape());
  const auto* in = static_cast<const uint8_t*>(host.raw());
  const size_t in_size = dtype_size(host.dtype());
  float* dst = out.data<float>();
  pool_.parallel_for(host.numel(), [&](int64_t b, int64_t e) {
    convert_to_f32(host.dtype(), in + size_t(b) * in_size, size_t(e - b), dst + b);
  }, int64_t(1) << 18);
  return out;
}

Result<KvCache> CpuBackend::create_kv_cache(const KvCacheSpec& spec) {
  if (spec.dtype != DType::f32 && spec.dtype != DType::f8_e4m3)
    return make_error(ErrorCode::unsupported, "cpu backend: KV cache must be f32 or f8_e4m3");
  return KvCache::create(spec);
}

void CpuBackend::embedding(const Tensor& ids, const Tensor& table, Tensor out) {
  const int64_t n = ids.numel(), hidden = table.size(1);
  const int32_t* id = ids.data<int32_t>();
  float* dst = out.data<float>();
  if (table.dtype() == DType::bf16) {
    const uint16_t* src = table.data<uint16_t>();
    for (int64_t t = 0; t < n; ++t) convert_to_f32(DType::bf16, src + int64_t(id[t]) * hidden, size_t(hidden), dst + t * hidden);
    return;
  }
  const float* src = table.data<float>();
  for (int64_t t = 0; t < n; ++t) std::memcpy(dst + t * hidden, src + int64_t(id[t]) * hidden, size_t(hidden) * 4);
}

void CpuBackend::rmsnorm(const Tensor& x, const Tensor& weight, float eps, Tensor out) {
  const int64_t hidden = x.size(-1), n = x.numel() / hidden;
  const float* xp = x.data<float>();
  const float* w = weight.data<float>();
  float* o = out.data<float>();
  pool_.parallel_for(n, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) rmsnorm_row(xp + t * hidden, w, eps, hidden, o + t * hidden);
  }, min_rows(hidden));
}

void CpuBackend::add_rmsnorm(Tensor residual, const Tensor& x, const Tensor& weight, float eps, Tensor out) {
  const int64_t hidden = x.size(-1), n = x.numel() / hidden;
  float* r = residual.data<float>();
  const float* xp = x.data<float>();
  const float* w = weight.data<float>();
  float* o = out.data<float>();
  pool_.parallel_for(n, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      float* row = r + t * hidden;
      for (int64_t i = 0; i < hidden; ++i) row[i] += xp[t * hidden + i];
      rmsnorm_row(row, w, eps, hidden, o + t * hidden);
    }
  }, min_rows(hidden));
}

void CpuBackend::linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor out) {
  const int64_t in = weight.size(1), out_features = weight.size(0), n = x.numel() / in;
  float* o = out.data<float>();
  if (weight.dtype() == DType::bf16) {
    // Widen kRowsPerBlock weight rows at a time (in parallel), then one sgemm per block into the
    // block's output columns.
    constexpr int64_t kRowsPerBlock = 256;
    std::vector<float> block(static_cast<size_t>(std::min(kRowsPerBlock, out_features) * in));
    const uint16_t* w = weight.data<uint16_t>();
    for (int64_t r0 = 0; r0 < out_features; r0 += kRowsPerBlock) {
      const int64_t rows = std::min(kRowsPerBlock, out_features - r0);
      pool_.parallel_for(rows, [&](int64_t b, int64_t e) {
        convert_to_f32(DType::bf16, w + (r0 + b) * in, size_t((e - b) * in), block.data() + b * in);
      }, min_rows(in));
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(n), int(rows), int(in), 1.0f, x.data<float>(), int(in),
                  block.data(), int(in), 0.0f, o + r0, int(out_features));
    }
  } else if (n == 1) {
    // A matrix-vector product: sgemv reads the weight once.
    cblas_sgemv(CblasRowMajor, CblasNoTrans, int(out_features), int(in), 1.0f, weight.data<float>(), int(in),
                x.data<float>(), 1, 0.0f, o, 1);
  } else {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(n), int(out_features), int(in), 1.0f, x.data<float>(),
                int(in), weight.data<float>(), int(in), 0.0f, o, int(out_features));
  }
  if (bias.defined()) {
    const float* bp = bias.data<float>();
    for (int64_t t = 0; t < n; ++t) {
      for (int64_t j = 0; j < out_features; ++j) o[t * out_features + j] += bp[j];
    }
  }
}

void CpuBackend::rope(Tensor q, Tensor k, const Tensor& positions, const Tensor& inv_freq) {
  const int64_t n = positions.numel(), half = inv_freq.numel(), head_dim = q.size(-1);
  const int64_t num_q_heads = q.numel() / (n * head_dim), num_k_heads = k.numel() / (n * head_dim);
  const int32_t* pos = positions.data<int32_t>();
  const float* freq = inv_freq.data<float>();
  float* qp = q.data<float>();
  float* kp = k.data<float>();
  pool_.parallel_for(n, [&](int64_t b, int64_t e) {
    std::vector<float> cos_v(static_cast<size_t>(half)), sin_v(static_cast<size_t>(half));
    for (int64_t t = b; t < e; ++t) {
      for (int64_t i = 0; i < half; ++i) {
        const float angle = float(pos[t]) * freq[i];  // fp32 product, as HF computes the frequencies
        cos_v[size_t(i)] = float(std::cos(double(angle)));
        sin_v[size_t(i)] = float(std::sin(double(angle)));
      }
      auto rotate = [&](float* head) {
        for (int64_t i = 0; i < half; ++i) {
          const float x1 = head[i], x2 = head[i + half];
          head[i] = x1 * cos_v[size_t(i)] - x2 * sin_v[size_t(i)];
          head[i + half] = x2 * cos_v[size_t(i)] + x1 * sin_v[size_t(i)];
        }
      };
      for (int64_t h = 0; h < num_q_heads; ++h) rotate(qp + (t * num_q_heads + h) * head_dim);
      for (int64_t h = 0; h < num_k_heads; ++h) rotate(kp + (t * num_k_heads + h) * head_dim);
    }
  }, min_rows((num_q_heads + num_k_heads) * head_dim + 8 * half));
}

void CpuBackend::write_kv(Tensor cache_component, const Tensor& x, const Tensor& slot_mapping) {
  const int64_t n = slot_mapping.numel();
  const int64_t entry = x.numel() / std::max<int64_t>(1, n);  // num_heads * head_dim
  const int32_t* slots = slot_mapping.data<int32_t>();
  if (cache_component.dtype() == DType::f8_e4m3) {
    kernels::write_kv_ref(cache_component.data<uint8_t>(), x.data<float>(), slots, n, entry,
                          cache_component.tensor_scale());
    return;
  }
  const float* src = x.data<float>();
  float* dst = cache_component.data<float>();
  for (int64_t t = 0; t < n; ++t) {
    std::memcpy(dst + int64_t(slots[t]) * entry, src + t * entry, size_t(entry) * sizeof(float));
  }
}

void CpuBackend::qkv_rope_write_kv(const Tensor& qkv, const Tensor& positions, const Tensor& inv_freq,
                                   const Tensor& slot_mapping, Tensor k_cache, Tensor v_cache, Tensor q_out,
                                   const QkNorm& qk_norm) {
  const int64_t n = q_out.size(0), num_heads = q_out.size(1), head_dim = q_out.size(2);
  const int64_t num_kv_heads = k_cache.size(2), half = inv_freq.numel();
  const int64_t row_elems = (num_heads + 2 * num_kv_heads) * head_dim;
  const kernels::HeadNorms norms{qk_norm.q_weight.defined() ? qk_norm.q_weight.data<float>() : nullptr,
                                 qk_norm.k_weight.defined() ? qk_norm.k_weight.data<float>() : nullptr, qk_norm.eps};
  const bool fp8 = k_cache.dtype() == DType::f8_e4m3;
  // The kernels' reference on each thread's tokens: one formula for the CPU backend and the
  // GPU's tests. Tokens write distinct cache slots, so the chunks never touch the same bytes.
  pool_.parallel_for(n, [&](int64_t b, int64_t e) {
    const float* rows = qkv.data<float>() + b * row_elems;
    const int32_t* pos = positions.data<int32_t>() + b;
    const int32_t* slots = slot_mapping.data<int32_t>() + b;
    float* q = q_out.data<float>() + b * num_heads * head_dim;
    if (fp8) {
      kernels::qkv_rope_write_kv_ref(rows, pos, inv_freq.data<float>(), slots, k_cache.data<uint8_t>(),
                                     v_cache.data<uint8_t>(), q, e - b, num_heads, num_kv_heads, head_dim, half,
                                     k_cache.tensor_scale(), v_cache.tensor_scale(), norms);
    } else {
      kernels::qkv_rope_write_kv_ref(rows, pos, inv_freq.data<float>(), slots, k_cache.data<float>(),
                                     v_cache.data<float>(), q, e - b, num_heads, num_kv_heads, head_dim, half, norms);
    }
  }, min_rows(row_elems + 8 * half));
}

namespace {

// Cache elements as fp32: an fp32 cache as is, an fp8 one through a table of
// e4m3_to_f32(byte) * scale (paged_attention_ref's widen, one multiply per byte value).
struct F32Elements {
  const float* data;
  float operator[](int64_t i) const { return data[i]; }
};
struct Fp8Elements {
  const uint8_t* data;
  const float* table;  // [256]
  float operator[](int64_t i) const { return table[data[i]]; }
};

std::vector<float> e4m3_table(float scale) {
  std::vector<float> table(256);
  for (int b = 0; b < 256; ++b) table[size_t(b)] = kernels::host_e4m3_to_f32(uint8_t(b)) * scale;
  return table;
}

// paged_attention over (token, head) items split on the pool: fp32 dot products, fp64 softmax sums.
template <typename Elements>
void attend(ThreadPool& pool, const float* qp, Elements kc, Elements vc, const AttentionMetadata& meta,
            int64_t num_heads, int64_t num_kv_heads, int64_t head_dim, float scale, float* op) {
  const int64_t n = meta.num_tokens, group = num_heads / num_kv_heads;
  const int64_t block_size = meta.block_size, kv_entry = num_kv_heads * head_dim;
  const int32_t* query_start = meta.query_start.data<int32_t>();
  const int32_t* context_lens = meta.context_lens.data<int32_t>();
  const int32_t* tables = meta.block_tables.data<int32_t>();
  // token -> sequence, so work items (token, head) can be split evenly.
  std::vector<int32_t> seq_of(static_cast<size_t>(n));
  for (int64_t s = 0; s < meta.num_seqs; ++s) {
    for (int32_t t = query_start[s]; t < query_start[s + 1]; ++t) seq_of[size_t(t)] = int32_t(s);
  }
  pool.parallel_for(n * num_heads, [&](int64_t b, int64_t e) {
    std::vector<float> scores(static_cast<size_t>(meta.max_context_len));
    std::vector<double> acc(static_cast<size_t>(head_dim));
    for (int64_t item = b; item < e; ++item) {
      const int64_t t = item / num_heads, h = item % num_heads, g = h / group;
      const int64_t s = seq_of[size_t(t)];
      const int64_t num_new = query_start[s + 1] - query_start[s];
      const int64_t pos = context_lens[s] - num_new + (t - query_start[s]);
      const int32_t* table = tables + s * meta.max_blocks_per_seq;
      const float* qh = qp + (t * num_heads + h) * head_dim;
      auto row = [&](int64_t j) {  // element offset of position j's head g
        return (int64_t(table[j / block_size]) * block_size + j % block_size) * kv_entry + g * head_dim;
      };
      float max_score = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j <= pos; ++j) {
        const int64_t kj = row(j);
        float dot = 0.0f;
        for (int64_t d = 0; d < head_dim; ++d) dot += qh[d] * kc[kj + d];
        scores[size_t(j)] = dot * scale;
        max_score = std::max(max_score, scores[size_t(j)]);
      }
      double denom = 0.0;
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t j = 0; j <= pos; ++j) {
        const double p = std::exp(double(scores[size_t(j)] - max_score));
        denom += p;
        const int64_t vj = row(j);
        for (int64_t d = 0; d < head_dim; ++d) acc[size_t(d)] += p * double(vc[vj + d]);
      }
      float* oh = op + (t * num_heads + h) * head_dim;
      for (int64_t d = 0; d < head_dim; ++d) oh[d] = float(acc[size_t(d)] / denom);
    }
  }, min_rows(2 * meta.max_context_len * head_dim));
}

}  // namespace

void CpuBackend::paged_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                                 const AttentionMetadata& meta, float scale, Tensor out) {
  const int64_t n = meta.num_tokens, head_dim = q.size(-1), num_heads = q.numel() / (n * head_dim);
  const int64_t num_kv_heads = k_cache.size(2);
  if (k_cache.dtype() == DType::f8_e4m3) {
    const std::vector<float> k_table = e4m3_table(k_cache.tensor_scale()), v_table = e4m3_table(v_cache.tensor_scale());
    attend(pool_, q.data<float>(), Fp8Elements{k_cache.data<uint8_t>(), k_table.data()},
           Fp8Elements{v_cache.data<uint8_t>(), v_table.data()}, meta, num_heads, num_kv_heads, head_dim, scale,
           out.data<float>());
    return;
  }
  attend(pool_, q.data<float>(), F32Elements{k_cache.data<float>()}, F32Elements{v_cache.data<float>()}, meta,
         num_heads, num_kv_heads, head_dim, scale, out.data<float>());
}

void CpuBackend::silu_and_mul(const Tensor& gate, const Tensor& up, Tensor out) {
  const int64_t total = gate.numel();
  const float* g = gate.data<float>();
  const float* u = up.data<float>();
  float* o = out.data<float>();
  pool_.parallel_for(total, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) o[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
  }, 16384);
}

void CpuBackend::silu_and_mul_packed(const Tensor& gate_up, Tensor out) {
  const int64_t inter = out.size(-1), n = out.numel() / inter;
  const float* gu = gate_up.data<float>();
  float* o = out.data<float>();
  pool_.parallel_for(n, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const float* g = gu + t * 2 * inter;
      const float* u = g + inter;
      for (int64_t i = 0; i < inter; ++i) o[t * inter + i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
    }
  }, min_rows(inter));
}

void CpuBackend::copy(const Tensor& src, Tensor dst) { std::memcpy(dst.raw(), src.raw(), src.nbytes()); }

void CpuBackend::add(const Tensor& a, const Tensor& b, Tensor out) {
  const int64_t total = a.numel();
  const float* ap = a.data<float>();
  const float* bp = b.data<float>();
  float* o = out.data<float>();
  for (int64_t i = 0; i < total; ++i) o[i] = ap[i] + bp[i];
}

void CpuBackend::gather_rows(const Tensor& x, const std::vector<int32_t>& rows, Tensor out) {
  const int64_t d = x.numel() / std::max<int64_t>(1, x.size(0));
  const float* src = x.data<float>();
  float* dst = out.data<float>();
  for (size_t i = 0; i < rows.size(); ++i) {
    std::memcpy(dst + int64_t(i) * d, src + int64_t(rows[i]) * d, size_t(d) * sizeof(float));
  }
}

std::vector<int32_t> CpuBackend::argmax(const Tensor& logits) {
  const int64_t vocab = logits.size(-1), n = logits.numel() / vocab;
  const float* l = logits.data<float>();
  std::vector<int32_t> out(static_cast<size_t>(n));
  for (int64_t t = 0; t < n; ++t) {
    const float* row = l + t * vocab;
    out[size_t(t)] = int32_t(std::max_element(row, row + vocab) - row);
  }
  return out;
}

}  // namespace troupe
