#include <cuda_bf16.h>

#include <algorithm>
#include <cfloat>
#include <cstdint>

#include "kernels/dependent_launch.cuh"
#include "kernels/cuda_ops.hpp"

namespace troupe::kernels {
namespace {

constexpr int kThreads = 256;

unsigned blocks_for(int64_t count) { return unsigned((count + kThreads - 1) / kThreads); }

__device__ float warp_sum(float v) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over a block of kBlockThreads threads; every thread gets the total.
template <int kBlockThreads = kThreads>
__device__ float block_sum(float v) {
  __shared__ float partial[kBlockThreads / 32];
  __shared__ float total;
  v = warp_sum(v);
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = v;
  __syncthreads();
  v = threadIdx.x < kBlockThreads / 32 ? partial[threadIdx.x] : 0.0f;
  if (threadIdx.x < 32) v = warp_sum(v);
  if (threadIdx.x == 0) total = v;
  __syncthreads();
  return total;
}

// Output stores: fp32 as is, bf16 rounded to nearest even (runtime/dtype.hpp's f32_to_bf16 for
// every non-NaN value).
__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }
// Four values at p[4 i .. 4 i + 3]: one 16-byte (fp32) or 8-byte (bf16) store.
__device__ __forceinline__ void store4(float* p, int64_t i, float4 v) { reinterpret_cast<float4*>(p)[i] = v; }
__device__ __forceinline__ void store4(__nv_bfloat16* p, int64_t i, float4 v) {
  const __nv_bfloat162 lo = __floats2bfloat162_rn(v.x, v.y), hi = __floats2bfloat162_rn(v.z, v.w);
  uint2 bits;
  bits.x = *reinterpret_cast<const uint32_t*>(&lo);
  bits.y = *reinterpret_cast<const uint32_t*>(&hi);
  reinterpret_cast<uint2*>(p)[i] = bits;
}

__global__ void embedding_kernel(const int32_t* ids, const float* table, float* out, int64_t hidden) {
  const float* row = table + int64_t(ids[blockIdx.x]) * hidden;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) out[blockIdx.x * hidden + i] = row[i];
}

__global__ void f32_to_bf16_kernel(const float* x, __nv_bfloat16* out, int64_t count) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) out[i] = __float2bfloat16_rn(x[i]);
}

__global__ void embedding_bf16_kernel(const int32_t* ids, const __nv_bfloat16* table, float* out, int64_t hidden) {
  const __nv_bfloat16* row = table + int64_t(ids[blockIdx.x]) * hidden;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) out[blockIdx.x * hidden + i] = __bfloat162float(row[i]);
}

template <typename OutT>
__global__ void add_rmsnorm_kernel(float* residual, const float* x, const float* weight, OutT* out, int64_t hidden,
                                   float eps) {
  allow_dependents();  // the next kernel may become resident (a GEMV starts loading weights)
  wait_for_prerequisites();
  float* r = residual + blockIdx.x * hidden;
  const float* xr = x + blockIdx.x * hidden;
  float sum_sq = 0.0f;
  for (int64_t i = threadIdx.x; i < hidden; i += kThreads) {
    const float v = r[i] + xr[i];
    r[i] = v;
    sum_sq += v * v;
  }
  const float scale = rsqrtf(block_sum(sum_sq) / float(hidden) + eps);
  for (int64_t i = threadIdx.x; i < hidden; i += kThreads)
    store(out + blockIdx.x * hidden + i, r[i] * scale * weight[i]);
}

// The same for hidden % 4 == 0 and hidden <= 4 * 4 * kWideThreads: 1024 threads, float4 loads, each
// thread keeping its (at most 4) vectors of the new residual in registers between the two passes;
// out stores 4 values at once (16 bytes fp32, 8 bytes bf16).
constexpr int kWideThreads = 1024;
constexpr int kWideVectors = 4;

template <typename OutT>
__global__ void __launch_bounds__(kWideThreads) add_rmsnorm_wide_kernel(float* residual, const float* x,
                                                                        const float* weight, OutT* out,
                                                                        int64_t hidden, float eps) {
  allow_dependents();  // the next kernel may become resident (a GEMV starts loading weights)
  wait_for_prerequisites();
  const int64_t row = blockIdx.x, vectors = hidden / 4;
  float4* r = reinterpret_cast<float4*>(residual + row * hidden);
  const float4* xr = reinterpret_cast<const float4*>(x + row * hidden);
  float4 kept[kWideVectors];
  float sum_sq = 0.0f;
#pragma unroll
  for (int j = 0; j < kWideVectors; ++j) {
    const int64_t i = threadIdx.x + int64_t(j) * kWideThreads;
    if (i < vectors) {
      const float4 a = r[i], b = xr[i];
      const float4 v = make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w);
      r[i] = v;
      kept[j] = v;
      sum_sq += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
  }
  const float scale = rsqrtf(block_sum<kWideThreads>(sum_sq) / float(hidden) + eps);
  const float4* w = reinterpret_cast<const float4*>(weight);
  OutT* o = out + row * hidden;
#pragma unroll
  for (int j = 0; j < kWideVectors; ++j) {
    const int64_t i = threadIdx.x + int64_t(j) * kWideThreads;
    if (i < vectors) {
      const float4 v = kept[j], g = w[i];
      store4(o, i, make_float4(v.x * scale * g.x, v.y * scale * g.y, v.z * scale * g.z, v.w * scale * g.w));
    }
  }
}

__global__ void add_bias_kernel(float* out, const float* bias, int64_t rows, int64_t cols) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < rows * cols) out[i] += bias[i % cols];
}

// One block per (token, head of q then k); threads over the rotated pairs (i, i + half).
__global__ void rope_kernel(float* q, float* k, const int32_t* positions, const float* inv_freq, int64_t num_q_heads,
                            int64_t num_k_heads, int64_t head_dim, int64_t half) {
  const int64_t t = blockIdx.x, head = blockIdx.y;
  const float pos = float(positions[t]);
  for (int64_t i = threadIdx.x; i < half; i += blockDim.x) {
    float* base = head < num_q_heads ? q + (t * num_q_heads + head) * head_dim
                                     : k + (t * num_k_heads + (head - num_q_heads)) * head_dim;
    const float angle = pos * inv_freq[i];
    const float c = float(cos(double(angle))), s = float(sin(double(angle)));
    const float x1 = base[i], x2 = base[i + half];
    base[i] = x1 * c - x2 * s;
    base[i + half] = x2 * c + x1 * s;
  }
}

// Cache entries are fp32 or bf16 (rounded to nearest even by store()).
template <typename CacheT>
__global__ void write_kv_kernel(CacheT* cache, const float* x, const int32_t* slot_mapping, int64_t entry) {
  const int64_t slot = slot_mapping[blockIdx.x];
  for (int64_t i = threadIdx.x; i < entry; i += blockDim.x) store(cache + slot * entry + i, x[blockIdx.x * entry + i]);
}

// A cache element as fp32 (bf16 widens exactly).
__device__ __forceinline__ float load(const float* p) { return *p; }
__device__ __forceinline__ float load(const __nv_bfloat16* p) { return __bfloat162float(*p); }

// One block per (token, head); its 8 warps split the context (warp w takes positions w, w + 8, ...),
// each keeping an online softmax with lanes splitting head_dim; the block then merges the 8
// partial results. Flash-decoding style, without a [seq x seq] matrix anywhere.
constexpr int kMaxDimsPerLane = 8;  // head_dim <= 256
constexpr int kAttentionWarps = kThreads / 32;

template <typename CacheT>
__global__ void paged_attention_kernel(const float* q, const CacheT* k_cache, const CacheT* v_cache,
                                       const int32_t* positions, const int32_t* seq_of_token,
                                       const int32_t* block_tables, int64_t max_blocks, int64_t block_size,
                                       int64_t num_heads, int64_t num_kv_heads, int64_t head_dim, float scale,
                                       float* out) {
  allow_dependents();  // the next kernel may become resident (a GEMV starts loading weights)
  wait_for_prerequisites();
  __shared__ float part_max[kAttentionWarps], part_sum[kAttentionWarps];
  __shared__ float warp_acc[kAttentionWarps][32 * kMaxDimsPerLane];
  const int64_t t = blockIdx.x / num_heads, h = blockIdx.x % num_heads;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t kv_h = h / (num_heads / num_kv_heads);
  const int32_t* table = block_tables + int64_t(seq_of_token[t]) * max_blocks;
  const float* qh = q + (t * num_heads + h) * head_dim;
  float qv[kMaxDimsPerLane], acc[kMaxDimsPerLane];
  for (int d = 0; d < kMaxDimsPerLane; ++d) {
    const int64_t dim = lane + 32 * d;
    qv[d] = dim < head_dim ? qh[dim] : 0.0f;
    acc[d] = 0.0f;
  }
  float running_max = -FLT_MAX, running_sum = 0.0f;
  const int64_t last = positions[t];
  for (int64_t j = warp; j <= last; j += kAttentionWarps) {
    const int64_t slot = int64_t(table[j / block_size]) * block_size + j % block_size;
    const CacheT* kj = k_cache + (slot * num_kv_heads + kv_h) * head_dim;
    const CacheT* vj = v_cache + (slot * num_kv_heads + kv_h) * head_dim;
    float dot = 0.0f;
    for (int d = 0; d < kMaxDimsPerLane; ++d) {
      const int64_t dim = lane + 32 * d;
      if (dim < head_dim) dot += qv[d] * load(kj + dim);
    }
    const float score = warp_sum(dot) * scale;
    const float new_max = fmaxf(running_max, score);
    const float correction = __expf(running_max - new_max);
    const float p = __expf(score - new_max);
    running_sum = running_sum * correction + p;
    for (int d = 0; d < kMaxDimsPerLane; ++d) {
      const int64_t dim = lane + 32 * d;
      acc[d] = acc[d] * correction + (dim < head_dim ? p * load(vj + dim) : 0.0f);
    }
    running_max = new_max;
  }
  if (lane == 0) {
    part_max[warp] = running_max;
    part_sum[warp] = running_sum;
  }
  for (int d = 0; d < kMaxDimsPerLane; ++d) warp_acc[warp][lane + 32 * d] = acc[d];
  __syncthreads();
  float block_max = -FLT_MAX;
  for (int w = 0; w < kAttentionWarps; ++w) block_max = fmaxf(block_max, part_max[w]);
  float total = 0.0f;
  for (int w = 0; w < kAttentionWarps; ++w) total += part_sum[w] * __expf(part_max[w] - block_max);
  float* oh = out + (t * num_heads + h) * head_dim;
  for (int64_t dim = threadIdx.x; dim < head_dim; dim += kThreads) {
    float value = 0.0f;
    for (int w = 0; w < kAttentionWarps; ++w) value += warp_acc[w][dim] * __expf(part_max[w] - block_max);
    oh[dim] = value / total;
  }
}

__global__ void silu_and_mul_kernel(const float* gate, const float* up, float* out, int64_t count) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) {
    const float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

__device__ __forceinline__ float silu_mul(float gate, float up) { return gate / (1.0f + expf(-gate)) * up; }

// gate_up: [n, 2 * inter] (gate, then up, per row); out: [n, inter]. One thread per output.
template <typename OutT>
__global__ void silu_and_mul_packed_kernel(const float* gate_up, OutT* out, int64_t inter, int64_t count) {
  allow_dependents();  // the next kernel may become resident (a GEMV starts loading weights)
  wait_for_prerequisites();
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) {
    const int64_t t = i / inter, c = i - t * inter;
    store(out + i, silu_mul(gate_up[t * 2 * inter + c], gate_up[t * 2 * inter + inter + c]));
  }
}

// The same for inter % 4 == 0 and aligned rows: block row blockIdx.x (a token), 4 outputs a thread
// from two float4 loads, no 64-bit division.
template <typename OutT>
__global__ void silu_and_mul_packed_vec_kernel(const float* gate_up, OutT* out, int64_t inter) {
  allow_dependents();  // the next kernel may become resident (a GEMV starts loading weights)
  wait_for_prerequisites();
  const int64_t vectors = inter / 4, v = int64_t(blockIdx.y) * blockDim.x + threadIdx.x;
  if (v >= vectors) return;
  const float4* row = reinterpret_cast<const float4*>(gate_up + int64_t(blockIdx.x) * 2 * inter);
  const float4 g = row[v], u = row[vectors + v];
  store4(out + int64_t(blockIdx.x) * inter, v,
         make_float4(silu_mul(g.x, u.x), silu_mul(g.y, u.y), silu_mul(g.z, u.z), silu_mul(g.w, u.w)));
}

__global__ void add_kernel(const float* a, const float* b, float* out, int64_t count) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) out[i] = a[i] + b[i];
}

// T: float or uint16_t (bf16 bits, copied as they are).
template <typename T>
__global__ void gather_rows_kernel(const T* x, const int32_t* rows, T* out, int64_t dim) {
  allow_dependents();  // the next kernel may become resident (a GEMV starts loading weights)
  wait_for_prerequisites();
  const T* src = x + int64_t(rows[blockIdx.x]) * dim;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) out[blockIdx.x * dim + i] = src[i];
}

__global__ void argmax_kernel(const float* logits, int32_t* out, int64_t vocab) {
  __shared__ float best_value[kThreads];
  __shared__ int32_t best_index[kThreads];
  const float* row = logits + blockIdx.x * vocab;
  float value = -FLT_MAX;
  int32_t index = 0x7fffffff;
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
    if (row[i] > value) {
      value = row[i];
      index = int32_t(i);
    }
  }
  best_value[threadIdx.x] = value;
  best_index[threadIdx.x] = index;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) {
      const float other = best_value[threadIdx.x + stride];
      const int32_t other_index = best_index[threadIdx.x + stride];
      if (other > best_value[threadIdx.x] || (other == best_value[threadIdx.x] && other_index < best_index[threadIdx.x])) {
        best_value[threadIdx.x] = other;
        best_index[threadIdx.x] = other_index;
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = best_index[0];
}

bool bad_rows(int64_t rows) { return rows < 0 || rows > INT32_MAX; }

}  // namespace

cudaError_t launch_embedding_f32(const int32_t* ids, const float* table, float* out, int64_t n, int64_t hidden,
                                 cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (bad_rows(n) || hidden <= 0) return cudaErrorInvalidValue;
  embedding_kernel<<<unsigned(n), kThreads, 0, stream>>>(ids, table, out, hidden);
  return cudaGetLastError();
}

cudaError_t launch_f32_to_bf16(const float* x, uint16_t* out, int64_t count, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  f32_to_bf16_kernel<<<blocks_for(count), kThreads, 0, stream>>>(x, reinterpret_cast<__nv_bfloat16*>(out), count);
  return cudaGetLastError();
}

cudaError_t launch_embedding_bf16(const int32_t* ids, const uint16_t* table, float* out, int64_t n, int64_t hidden,
                                  cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (bad_rows(n) || hidden <= 0) return cudaErrorInvalidValue;
  embedding_bf16_kernel<<<unsigned(n), kThreads, 0, stream>>>(ids, reinterpret_cast<const __nv_bfloat16*>(table), out,
                                                              hidden);
  return cudaGetLastError();
}

namespace {

template <typename OutT>
cudaError_t launch_add_rmsnorm(float* residual, const float* x, const float* weight, OutT* out, int64_t n,
                               int64_t hidden, float eps, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (bad_rows(n) || hidden <= 0) return cudaErrorInvalidValue;
  const bool aligned = (reinterpret_cast<uintptr_t>(residual) | reinterpret_cast<uintptr_t>(x) |
                        reinterpret_cast<uintptr_t>(weight) | reinterpret_cast<uintptr_t>(out)) % 16 == 0;
  if (aligned && hidden % 4 == 0 && hidden / 4 <= int64_t(kWideVectors) * kWideThreads && hidden >= 1024)
    return launch_dependent(add_rmsnorm_wide_kernel<OutT>, dim3(unsigned(n)), dim3(kWideThreads), 0, stream, residual,
                            x, weight, out, hidden, eps);
  return launch_dependent(add_rmsnorm_kernel<OutT>, dim3(unsigned(n)), dim3(kThreads), 0, stream, residual, x, weight,
                          out, hidden, eps);
}

}  // namespace

cudaError_t launch_add_rmsnorm_f32(float* residual, const float* x, const float* weight, float* out, int64_t n,
                                   int64_t hidden, float eps, cudaStream_t stream) {
  return launch_add_rmsnorm(residual, x, weight, out, n, hidden, eps, stream);
}

cudaError_t launch_add_rmsnorm_f32_to_bf16(float* residual, const float* x, const float* weight, uint16_t* out,
                                           int64_t n, int64_t hidden, float eps, cudaStream_t stream) {
  return launch_add_rmsnorm(residual, x, weight, reinterpret_cast<__nv_bfloat16*>(out), n, hidden, eps, stream);
}

cudaError_t launch_add_bias_f32(float* out, const float* bias, int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows * cols == 0) return cudaSuccess;
  add_bias_kernel<<<blocks_for(rows * cols), kThreads, 0, stream>>>(out, bias, rows, cols);
  return cudaGetLastError();
}

cudaError_t launch_rope_f32(float* q, float* k, const int32_t* positions, const float* inv_freq, int64_t n,
                            int64_t num_q_heads, int64_t num_k_heads, int64_t head_dim, int64_t half,
                            cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (bad_rows(n) || 2 * half > head_dim) return cudaErrorInvalidValue;
  if (num_q_heads + num_k_heads > 65535) return cudaErrorInvalidValue;
  const dim3 grid(unsigned(n), unsigned(num_q_heads + num_k_heads));
  const unsigned threads = unsigned(std::min<int64_t>(std::max<int64_t>(32, (half + 31) / 32 * 32), kThreads));
  rope_kernel<<<grid, threads, 0, stream>>>(q, k, positions, inv_freq, num_q_heads, num_k_heads, head_dim, half);
  return cudaGetLastError();
}

namespace {

template <typename CacheT>
cudaError_t launch_write_kv(CacheT* cache, const float* x, const int32_t* slot_mapping, int64_t n, int64_t entry,
                            cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (bad_rows(n) || entry <= 0) return cudaErrorInvalidValue;
  write_kv_kernel<<<unsigned(n), kThreads, 0, stream>>>(cache, x, slot_mapping, entry);
  return cudaGetLastError();
}

template <typename CacheT>
cudaError_t launch_paged_attention(const float* q, const CacheT* k_cache, const CacheT* v_cache,
                                   const int32_t* positions, const int32_t* seq_of_token, const int32_t* block_tables,
                                   int64_t max_blocks, int64_t block_size, int64_t n, int64_t num_heads,
                                   int64_t num_kv_heads, int64_t head_dim, float scale, float* out,
                                   cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (head_dim > 32 * kMaxDimsPerLane || num_kv_heads <= 0 || num_heads % num_kv_heads != 0) return cudaErrorInvalidValue;
  const int64_t num_blocks = n * num_heads;
  if (num_blocks > INT32_MAX) return cudaErrorInvalidValue;
  paged_attention_kernel<<<unsigned(num_blocks), kThreads, 0, stream>>>(q, k_cache, v_cache, positions, seq_of_token,
                                                                        block_tables, max_blocks, block_size, num_heads,
                                                                        num_kv_heads, head_dim, scale, out);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_write_kv_f32(float* cache, const float* x, const int32_t* slot_mapping, int64_t n, int64_t entry,
                                cudaStream_t stream) {
  return launch_write_kv(cache, x, slot_mapping, n, entry, stream);
}

cudaError_t launch_write_kv_f32(uint16_t* cache, const float* x, const int32_t* slot_mapping, int64_t n, int64_t entry,
                                cudaStream_t stream) {
  return launch_write_kv(reinterpret_cast<__nv_bfloat16*>(cache), x, slot_mapping, n, entry, stream);
}

cudaError_t launch_paged_attention_f32(const float* q, const float* k_cache, const float* v_cache,
                                       const int32_t* positions, const int32_t* seq_of_token,
                                       const int32_t* block_tables, int64_t max_blocks, int64_t block_size,
                                       int64_t n, int64_t num_heads, int64_t num_kv_heads, int64_t head_dim,
                                       float scale, float* out, cudaStream_t stream) {
  return launch_paged_attention(q, k_cache, v_cache, positions, seq_of_token, block_tables, max_blocks, block_size, n,
                                num_heads, num_kv_heads, head_dim, scale, out, stream);
}

cudaError_t launch_paged_attention_f32(const float* q, const uint16_t* k_cache, const uint16_t* v_cache,
                                       const int32_t* positions, const int32_t* seq_of_token,
                                       const int32_t* block_tables, int64_t max_blocks, int64_t block_size,
                                       int64_t n, int64_t num_heads, int64_t num_kv_heads, int64_t head_dim,
                                       float scale, float* out, cudaStream_t stream) {
  return launch_paged_attention(q, reinterpret_cast<const __nv_bfloat16*>(k_cache),
                                reinterpret_cast<const __nv_bfloat16*>(v_cache), positions, seq_of_token, block_tables,
                                max_blocks, block_size, n, num_heads, num_kv_heads, head_dim, scale, out, stream);
}

cudaError_t launch_silu_and_mul_f32(const float* gate, const float* up, float* out, int64_t count, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  silu_and_mul_kernel<<<blocks_for(count), kThreads, 0, stream>>>(gate, up, out, count);
  return cudaGetLastError();
}

namespace {

template <typename OutT>
cudaError_t launch_silu_and_mul_packed(const float* gate_up, OutT* out, int64_t n, int64_t inter,
                                       cudaStream_t stream) {
  if (n == 0 || inter == 0) return cudaSuccess;
  if (n < 0 || inter < 0) return cudaErrorInvalidValue;
  const int64_t column_blocks = (inter / 4 + kThreads - 1) / kThreads;
  const bool aligned = reinterpret_cast<uintptr_t>(gate_up) % 16 == 0 &&
                       reinterpret_cast<uintptr_t>(out) % (4 * sizeof(OutT)) == 0;
  if (aligned && inter % 4 == 0 && !bad_rows(n) && column_blocks <= 65535) {
    const dim3 grid{unsigned(n), unsigned(column_blocks)};
    return launch_dependent(silu_and_mul_packed_vec_kernel<OutT>, grid, dim3(kThreads), 0, stream, gate_up, out, inter);
  }
  return launch_dependent(silu_and_mul_packed_kernel<OutT>, dim3(blocks_for(n * inter)), dim3(kThreads), 0, stream,
                          gate_up, out, inter, n * inter);
}

}  // namespace

cudaError_t launch_silu_and_mul_packed_f32(const float* gate_up, float* out, int64_t n, int64_t inter,
                                           cudaStream_t stream) {
  return launch_silu_and_mul_packed(gate_up, out, n, inter, stream);
}

cudaError_t launch_silu_and_mul_packed_f32_to_bf16(const float* gate_up, uint16_t* out, int64_t n, int64_t inter,
                                                   cudaStream_t stream) {
  return launch_silu_and_mul_packed(gate_up, reinterpret_cast<__nv_bfloat16*>(out), n, inter, stream);
}

cudaError_t launch_add_f32(const float* a, const float* b, float* out, int64_t count, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  add_kernel<<<blocks_for(count), kThreads, 0, stream>>>(a, b, out, count);
  return cudaGetLastError();
}

cudaError_t launch_gather_rows_f32(const float* x, const int32_t* rows, float* out, int64_t num_rows, int64_t dim,
                                   cudaStream_t stream) {
  if (num_rows == 0) return cudaSuccess;
  if (bad_rows(num_rows)) return cudaErrorInvalidValue;
  gather_rows_kernel<<<unsigned(num_rows), kThreads, 0, stream>>>(x, rows, out, dim);
  return cudaGetLastError();
}

cudaError_t launch_gather_rows_bf16(const uint16_t* x, const int32_t* rows, uint16_t* out, int64_t num_rows,
                                    int64_t dim, cudaStream_t stream) {
  if (num_rows == 0) return cudaSuccess;
  if (bad_rows(num_rows)) return cudaErrorInvalidValue;
  gather_rows_kernel<<<unsigned(num_rows), kThreads, 0, stream>>>(x, rows, out, dim);
  return cudaGetLastError();
}

cudaError_t launch_argmax_f32(const float* logits, int32_t* out, int64_t rows, int64_t vocab, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  if (bad_rows(rows) || vocab <= 0) return cudaErrorInvalidValue;
  argmax_kernel<<<unsigned(rows), kThreads, 0, stream>>>(logits, out, vocab);
  return cudaGetLastError();
}

}  // namespace troupe::kernels
