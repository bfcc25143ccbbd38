#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <cmath>

#include "kernels/attention_decode.hpp"
#include "kernels/dependent_launch.cuh"
#include "kernels/split_kv_partials.cuh"

namespace troupe::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr float kLog2e = 1.4426950408889634f;
constexpr int kUnroll = 4;  // keys in flight per lane group

// Lanes per key: head_dim / 4 float4 loads spread over kLanes lanes (at most a warp); a warp
// works on 32 / kLanes keys at once.
template <int D>
struct DecodeShape {
  static constexpr int kLanes = D / 4 < 32 ? D / 4 : 32;
  static constexpr int kVecs = D / 4 / kLanes;  // float4 per lane
  static constexpr int kKeysPerWarp = 32 / kLanes;
  static constexpr int kGroups = kWarps * kKeysPerWarp;  // lane groups of a block, one key each
};

// Four cache elements as fp32: one 16-byte load (fp32 cache), one 8-byte load (bf16 cache,
// widened exactly: a bf16 is the high half of its fp32) or one 4-byte load (fp8 cache, widened
// exactly; its per-tensor scales are folded in by the launcher: k_scale into the score scale,
// v_scale into out_scale).
__device__ __forceinline__ float4 load4(const float* p) { return __ldg(reinterpret_cast<const float4*>(p)); }
__device__ __forceinline__ float4 load4(const __nv_bfloat16* p) {
  const uint2 bits = __ldg(reinterpret_cast<const uint2*>(p));
  return make_float4(__uint_as_float(bits.x << 16), __uint_as_float(bits.x & 0xffff0000u),
                     __uint_as_float(bits.y << 16), __uint_as_float(bits.y & 0xffff0000u));
}

__device__ __forceinline__ float e4m3_to_float(uint32_t byte) {
  __nv_fp8_e4m3 v;
  v.__x = __nv_fp8_storage_t(byte & 0xffu);
  return static_cast<float>(v);
}
__device__ __forceinline__ float4 load4(const __nv_fp8_e4m3* p) {
  const uint32_t bits = __ldg(reinterpret_cast<const unsigned int*>(p));  // p[0] in the low byte
  return make_float4(e4m3_to_float(bits), e4m3_to_float(bits >> 8), e4m3_to_float(bits >> 16),
                     e4m3_to_float(bits >> 24));
}

__device__ __forceinline__ float4 fma4(float4 acc, float c, float p, float4 v) {
  return make_float4(acc.x * c + p * v.x, acc.y * c + p * v.y, acc.z * c + p * v.z, acc.w * c + p * v.w);
}

// One block per (query i, q head, partition). Lane group g takes keys begin + g, begin + g +
// kGroups, ... with its own online softmax (log2 domain); the block then merges its groups.
template <int D, typename CacheT>
__global__ void __launch_bounds__(kThreads)
    decode_attention_kernel(const float* __restrict__ q, const CacheT* __restrict__ k_cache,
                            const CacheT* __restrict__ v_cache, const int32_t* __restrict__ positions,
                            const int32_t* __restrict__ seq_of_token, const int32_t* __restrict__ tokens,
                            const int32_t* __restrict__ block_tables, int max_blocks, int block_size, int num_heads,
                            int num_kv_heads, float scale_log2, int partition_keys, int min_keys, float out_scale,
                            float* __restrict__ workspace,
                            float* __restrict__ out) {
  allow_dependents();  // the next kernel may become resident (a GEMV starts loading weights)
  wait_for_prerequisites();
  using S = DecodeShape<D>;
  __shared__ float m_s[S::kGroups], l_s[S::kGroups], w_s[S::kGroups];
  __shared__ __align__(16) float acc_s[S::kGroups][D];
  const int i = blockIdx.x, h = blockIdx.y, part = blockIdx.z, num_partitions = gridDim.z;
  const int64_t t = tokens ? tokens[i] : i;
  const int32_t* table = block_tables + int64_t(seq_of_token[t]) * max_blocks;
  const int context = positions[t] + 1;
  const int keys = split_kv::partition_length(context, num_partitions, partition_keys, min_keys);
  const int begin = part * keys, end = min(context, begin + keys);
  const int kv_head = h / (num_heads / num_kv_heads);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = warp * S::kKeysPerWarp + lane / S::kLanes, sub = lane % S::kLanes;

  float4 qv[S::kVecs], acc[S::kVecs];
  const float* qh = q + (t * num_heads + h) * D;
#pragma unroll
  for (int v = 0; v < S::kVecs; ++v) {
    const float4 x = __ldg(reinterpret_cast<const float4*>(qh + (sub + S::kLanes * v) * 4));
    qv[v] = make_float4(x.x * scale_log2, x.y * scale_log2, x.z * scale_log2, x.w * scale_log2);
    acc[v] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  }
  float m = -INFINITY, l = 0.0f;
  // kUnroll keys per group and step, loaded before any is used so their loads overlap. The trip
  // count is warp-uniform (the shuffles need every lane); keys past `end` get p = 0.
  for (int base = begin + warp * S::kKeysPerWarp; base < end; base += S::kGroups * kUnroll) {
    float dot[kUnroll];
    float4 vv[kUnroll][S::kVecs];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int j = base + u * S::kGroups + lane / S::kLanes;
      dot[u] = -INFINITY;
      if (j < end) {
        const int64_t slot = int64_t(table[j / block_size]) * block_size + j % block_size;
        const int64_t offset = (slot * num_kv_heads + kv_head) * D;
        float partial = 0.0f;
#pragma unroll
        for (int v = 0; v < S::kVecs; ++v) {
          const int c = (sub + S::kLanes * v) * 4;
          const float4 k4 = load4(k_cache + offset + c);
          vv[u][v] = load4(v_cache + offset + c);
          partial += qv[v].x * k4.x + qv[v].y * k4.y + qv[v].z * k4.z + qv[v].w * k4.w;
        }
        dot[u] = partial;
      } else {
#pragma unroll
        for (int v = 0; v < S::kVecs; ++v) vv[u][v] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      }
    }
    float step_max = -INFINITY;
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      // Sum over the group's lanes; -inf (a key past the end) stays -inf.
#pragma unroll
      for (int o = S::kLanes / 2; o > 0; o /= 2) dot[u] += __shfl_xor_sync(0xffffffffu, dot[u], o);
      step_max = fmaxf(step_max, dot[u]);
    }
    if (step_max == -INFINITY) continue;  // this group has no key in this step
    const float m_new = fmaxf(m, step_max);
    const float correction = exp2f(m - m_new);  // 0 on the group's first keys (m = -inf)
    l *= correction;
#pragma unroll
    for (int v = 0; v < S::kVecs; ++v)
      acc[v] = make_float4(acc[v].x * correction, acc[v].y * correction, acc[v].z * correction, acc[v].w * correction);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const float p = exp2f(dot[u] - m_new);  // 0 for keys past the end
      l += p;
#pragma unroll
      for (int v = 0; v < S::kVecs; ++v) acc[v] = fma4(acc[v], 1.0f, p, vv[u][v]);
    }
    m = m_new;
  }
  if (sub == 0) {
    m_s[g] = m;
    l_s[g] = l;
  }
#pragma unroll
  for (int v = 0; v < S::kVecs; ++v) *reinterpret_cast<float4*>(&acc_s[g][(sub + S::kLanes * v) * 4]) = acc[v];
  __syncthreads();
  float block_max = -INFINITY;
  for (int k = 0; k < S::kGroups; ++k) block_max = fmaxf(block_max, m_s[k]);
  const float max_use = block_max == -INFINITY ? 0.0f : block_max;  // empty partition: all weights 0
  if (threadIdx.x < S::kGroups) w_s[threadIdx.x] = exp2f(m_s[threadIdx.x] - max_use);
  __syncthreads();
  float total = 0.0f;
  for (int k = 0; k < S::kGroups; ++k) total += l_s[k] * w_s[k];
  const int64_t item = int64_t(i) * num_heads + h;
  for (int c = threadIdx.x; c < D; c += kThreads) {
    float value = 0.0f;
    for (int k = 0; k < S::kGroups; ++k) value += acc_s[k][c] * w_s[k];
    if (num_partitions == 1) {
      out[(t * num_heads + h) * D + c] = value / total * out_scale;
    } else {
      workspace[(item * num_partitions + part) * D + c] = value;
    }
  }
  if (num_partitions > 1 && threadIdx.x == 0) {
    const int64_t stats = int64_t(gridDim.x) * num_heads * num_partitions;
    float* maxima = workspace + stats * D;
    maxima[item * num_partitions + part] = block_max;
    maxima[stats + item * num_partitions + part] = total;
  }
}

// Grouped variant: one block per (query i, kv head, partition) computes all G q heads sharing that
// kv head, so each K/V row is read once per block instead of once per q head. Lane group g streams
// keys as above; per key it takes G dot products and keeps G online softmaxes. Then the block
// merges its groups per q head. acc_s holds kGroups * G * D floats (32 KiB at G * D = 1024).
template <int D, int G, typename CacheT>
__global__ void __launch_bounds__(kThreads, G * DecodeShape<D>::kVecs <= 4 ? 2 : 1)
    decode_group_attention_kernel(const float* __restrict__ q, const CacheT* __restrict__ k_cache,
                                  const CacheT* __restrict__ v_cache, const int32_t* __restrict__ positions,
                                  const int32_t* __restrict__ seq_of_token, const int32_t* __restrict__ tokens,
                                  const int32_t* __restrict__ block_tables, int max_blocks, int block_size,
                                  int num_heads, int num_kv_heads, float scale_log2, int partition_keys, int min_keys,
                                  float out_scale, float* __restrict__ workspace, float* __restrict__ out) {
  allow_dependents();  // the next kernel may become resident (a GEMV starts loading weights)
  wait_for_prerequisites();
  using S = DecodeShape<D>;
  __shared__ float m_s[G][S::kGroups], l_s[G][S::kGroups], w_s[G][S::kGroups];
  __shared__ float max_s[G], total_s[G];
  __shared__ __align__(16) float acc_s[S::kGroups][G][D];
  const int i = blockIdx.x, kv_head = blockIdx.y, part = blockIdx.z, num_partitions = gridDim.z;
  const int64_t t = tokens ? tokens[i] : i;
  const int32_t* table = block_tables + int64_t(seq_of_token[t]) * max_blocks;
  const int context = positions[t] + 1;
  const int keys = split_kv::partition_length(context, num_partitions, partition_keys, min_keys);
  const int begin = part * keys, end = min(context, begin + keys);
  const int h0 = kv_head * G;  // q heads h0 .. h0 + G - 1 share kv_head
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = warp * S::kKeysPerWarp + lane / S::kLanes, sub = lane % S::kLanes;

  float4 qv[G][S::kVecs], acc[G][S::kVecs];
  float m[G], l[G];
#pragma unroll
  for (int hq = 0; hq < G; ++hq) {
    const float* qh = q + (t * num_heads + h0 + hq) * D;
#pragma unroll
    for (int v = 0; v < S::kVecs; ++v) {
      const float4 x = __ldg(reinterpret_cast<const float4*>(qh + (sub + S::kLanes * v) * 4));
      qv[hq][v] = make_float4(x.x * scale_log2, x.y * scale_log2, x.z * scale_log2, x.w * scale_log2);
      acc[hq][v] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }
    m[hq] = -INFINITY;
    l[hq] = 0.0f;
  }
  // Warp-uniform trip count (the shuffles need every lane); keys past `end` get p = 0.
  for (int base = begin + warp * S::kKeysPerWarp; base < end; base += S::kGroups * kUnroll) {
    float dot[kUnroll][G];
    float4 vv[kUnroll][S::kVecs];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int j = base + u * S::kGroups + lane / S::kLanes;
      if (j < end) {
        const int64_t slot = int64_t(table[j / block_size]) * block_size + j % block_size;
        const int64_t offset = (slot * num_kv_heads + kv_head) * D;
        float4 k4[S::kVecs];
#pragma unroll
        for (int v = 0; v < S::kVecs; ++v) {
          const int c = (sub + S::kLanes * v) * 4;
          k4[v] = load4(k_cache + offset + c);
          vv[u][v] = load4(v_cache + offset + c);
        }
#pragma unroll
        for (int hq = 0; hq < G; ++hq) {
          float partial = 0.0f;
#pragma unroll
          for (int v = 0; v < S::kVecs; ++v)
            partial += qv[hq][v].x * k4[v].x + qv[hq][v].y * k4[v].y + qv[hq][v].z * k4[v].z + qv[hq][v].w * k4[v].w;
          dot[u][hq] = partial;
        }
      } else {
#pragma unroll
        for (int hq = 0; hq < G; ++hq) dot[u][hq] = -INFINITY;
#pragma unroll
        for (int v = 0; v < S::kVecs; ++v) vv[u][v] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      }
    }
    // Sums over the group's lanes; -inf (a key past the end) stays -inf.
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
#pragma unroll
      for (int hq = 0; hq < G; ++hq)
#pragma unroll
        for (int o = S::kLanes / 2; o > 0; o /= 2) dot[u][hq] += __shfl_xor_sync(0xffffffffu, dot[u][hq], o);
    // The group's first key of this step (u = 0) is its smallest: if it is past the end, the
    // group has no key in this step. (An if, not a continue: the warp reconverges before the
    // next step's shuffles.)
    if (base + lane / S::kLanes < end) {
#pragma unroll
      for (int hq = 0; hq < G; ++hq) {
        float step_max = dot[0][hq];
#pragma unroll
        for (int u = 1; u < kUnroll; ++u) step_max = fmaxf(step_max, dot[u][hq]);
        const float m_new = fmaxf(m[hq], step_max);  // finite: key u = 0 is valid
        const float correction = exp2f(m[hq] - m_new);  // 0 on the group's first keys (m = -inf)
        float sum = l[hq] * correction;
#pragma unroll
        for (int v = 0; v < S::kVecs; ++v)
          acc[hq][v] = make_float4(acc[hq][v].x * correction, acc[hq][v].y * correction, acc[hq][v].z * correction,
                                   acc[hq][v].w * correction);
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          const float p = exp2f(dot[u][hq] - m_new);  // 0 for keys past the end
          sum += p;
#pragma unroll
          for (int v = 0; v < S::kVecs; ++v) acc[hq][v] = fma4(acc[hq][v], 1.0f, p, vv[u][v]);
        }
        l[hq] = sum;
        m[hq] = m_new;
      }
    }
  }
#pragma unroll
  for (int hq = 0; hq < G; ++hq) {
    if (sub == 0) {
      m_s[hq][g] = m[hq];
      l_s[hq][g] = l[hq];
    }
#pragma unroll
    for (int v = 0; v < S::kVecs; ++v)
      *reinterpret_cast<float4*>(&acc_s[g][hq][(sub + S::kLanes * v) * 4]) = acc[hq][v];
  }
  __syncthreads();
  if (threadIdx.x < G) {
    float block_max = -INFINITY;
    for (int k = 0; k < S::kGroups; ++k) block_max = fmaxf(block_max, m_s[threadIdx.x][k]);
    max_s[threadIdx.x] = block_max;
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < G * S::kGroups; idx += kThreads) {
    const int hq = idx / S::kGroups, k = idx % S::kGroups;
    const float max_use = max_s[hq] == -INFINITY ? 0.0f : max_s[hq];  // empty partition: all weights 0
    w_s[hq][k] = exp2f(m_s[hq][k] - max_use);
  }
  __syncthreads();
  if (threadIdx.x < G) {
    float total = 0.0f;
    for (int k = 0; k < S::kGroups; ++k) total += l_s[threadIdx.x][k] * w_s[threadIdx.x][k];
    total_s[threadIdx.x] = total;
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < G * D; idx += kThreads) {
    const int hq = idx / D, c = idx % D;
    float value = 0.0f;
    for (int k = 0; k < S::kGroups; ++k) value += acc_s[k][hq][c] * w_s[hq][k];
    const int64_t h = h0 + hq;
    if (num_partitions == 1) {
      out[(t * num_heads + h) * D + c] = value / total_s[hq] * out_scale;
    } else {
      workspace[((int64_t(i) * num_heads + h) * num_partitions + part) * D + c] = value;
    }
  }
  if (num_partitions > 1 && threadIdx.x < G) {
    const int64_t item = int64_t(i) * num_heads + h0 + threadIdx.x;
    const int64_t stats = int64_t(gridDim.x) * num_heads * num_partitions;
    float* maxima = workspace + stats * D;
    maxima[item * num_partitions + part] = max_s[threadIdx.x];
    maxima[stats + item * num_partitions + part] = total_s[threadIdx.x];
  }
}

// One block per (query i, q head): merges the partitions' partial results.
__global__ void decode_reduce_kernel(const int32_t* __restrict__ tokens, int num_heads, int head_dim,
                                     int num_partitions, float out_scale, const float* __restrict__ workspace,
                                     float* __restrict__ out) {
  allow_dependents();  // the next kernel may become resident (a GEMV starts loading weights)
  wait_for_prerequisites();
  __shared__ float w_s[kDecodeMaxPartitions];
  __shared__ float inv_s;
  __shared__ int used_s;
  const int i = blockIdx.x, h = blockIdx.y;
  const int64_t t = tokens ? tokens[i] : i;
  const int64_t item = int64_t(i) * num_heads + h;
  const int64_t stats = int64_t(gridDim.x) * num_heads * num_partitions;
  const float* maxima = workspace + stats * head_dim + item * num_partitions;
  // The first warp weighs the partitions (split_kv_partials.cuh, as MLA's combine does), then every
  // thread merges columns over the partitions that hold keys.
  if (threadIdx.x < 32) {
    const split_kv::Weights wt = split_kv::weigh(maxima, maxima + stats, num_partitions, int(threadIdx.x), w_s);
    if (threadIdx.x == 0) inv_s = wt.inv * out_scale, used_s = wt.used;  // out_scale: an fp8 cache's v_scale, else 1
  }
  __syncthreads();
  const float* partial = workspace + item * num_partitions * head_dim;
  for (int c = threadIdx.x; c < head_dim; c += blockDim.x)
    out[(t * num_heads + h) * head_dim + c] = split_kv::merge_column(partial + c, head_dim, used_s, w_s) * inv_s;
}

template <int D, typename CacheT>
void launch(dim3 grid, cudaStream_t stream, const float* q, const CacheT* k_cache, const CacheT* v_cache,
            const int32_t* positions, const int32_t* seq_of_token, const int32_t* tokens, const int32_t* block_tables,
            int64_t max_blocks, int64_t block_size, int64_t num_heads, int64_t num_kv_heads, float scale,
            int64_t partition_keys, float out_scale, float* workspace, float* out) {
  launch_dependent(decode_attention_kernel<D, CacheT>, grid, dim3(kThreads), 0, stream,
      q, k_cache, v_cache, positions, seq_of_token, tokens, block_tables, int(max_blocks), int(block_size),
      int(num_heads), int(num_kv_heads), scale * kLog2e, int(partition_keys),
      split_kv::split_min_keys(kDecodeMinPartitionKeys), out_scale, workspace, out);
}

template <int D, int G, typename CacheT>
void launch_group(dim3 grid, cudaStream_t stream, const float* q, const CacheT* k_cache, const CacheT* v_cache,
                  const int32_t* positions, const int32_t* seq_of_token, const int32_t* tokens,
                  const int32_t* block_tables, int64_t max_blocks, int64_t block_size, int64_t num_heads,
                  int64_t num_kv_heads, float scale, int64_t partition_keys, float out_scale, float* workspace,
                  float* out) {
  launch_dependent(decode_group_attention_kernel<D, G, CacheT>, grid, dim3(kThreads), 0, stream,
      q, k_cache, v_cache, positions, seq_of_token, tokens, block_tables, int(max_blocks), int(block_size),
      int(num_heads), int(num_kv_heads), scale * kLog2e, int(partition_keys),
      split_kv::split_min_keys(kDecodeMinGroupPartitionKeys), out_scale, workspace, out);
}

template <int D, typename CacheT>
void launch_group_d(int64_t group, dim3 grid, cudaStream_t stream, const float* q, const CacheT* k_cache,
                    const CacheT* v_cache, const int32_t* positions, const int32_t* seq_of_token,
                    const int32_t* tokens, const int32_t* block_tables, int64_t max_blocks, int64_t block_size,
                    int64_t num_heads, int64_t num_kv_heads, float scale, int64_t partition_keys, float out_scale,
                    float* workspace, float* out) {
  if (group == 2) {
    launch_group<D, 2>(grid, stream, q, k_cache, v_cache, positions, seq_of_token, tokens, block_tables,
                       max_blocks, block_size, num_heads, num_kv_heads, scale, partition_keys, out_scale, workspace,
                       out);
  } else if (group == 4) {
    launch_group<D, 4>(grid, stream, q, k_cache, v_cache, positions, seq_of_token, tokens, block_tables,
                       max_blocks, block_size, num_heads, num_kv_heads, scale, partition_keys, out_scale, workspace,
                       out);
  } else if constexpr (D <= 128) {  // group 8 (decode_group_supported keeps G * D <= 1024)
    launch_group<D, 8>(grid, stream, q, k_cache, v_cache, positions, seq_of_token, tokens, block_tables,
                       max_blocks, block_size, num_heads, num_kv_heads, scale, partition_keys, out_scale, workspace,
                       out);
  }
}

// Whether the grouped kernel handles this shape: groups of 2, 4 or 8 q heads per kv head, with
// group * head_dim <= 1024 (shared memory and registers).
bool decode_group_supported(int64_t num_heads, int64_t num_kv_heads, int64_t head_dim) {
  if (num_kv_heads <= 0 || num_heads % num_kv_heads != 0 || !decode_attention_supports(head_dim)) return false;
  const int64_t group = num_heads / num_kv_heads;
  return (group == 2 || group == 4 || group == 8) && group * head_dim <= 1024;
}

// Partitions so that `items` blocks per partition fill the GPU (about two blocks per SM), none
// shorter than min_keys, none empty for the longest context.
int64_t partitions_for(int64_t items, int64_t max_context, int64_t num_sms, int64_t min_keys) {
  if (items <= 0 || max_context <= min_keys) return 1;
  const int64_t wanted = (2 * std::max<int64_t>(1, num_sms) + items - 1) / items;
  const int64_t by_length = (max_context + min_keys - 1) / min_keys;
  const int64_t parts = std::clamp<int64_t>(std::min(wanted, by_length), 1, kDecodeMaxPartitions);
  const int64_t keys = decode_partition_keys(max_context, parts);
  return (max_context + keys - 1) / keys;
}

}  // namespace

bool decode_attention_supports(int64_t head_dim) {
  return head_dim == 16 || head_dim == 32 || head_dim == 64 || head_dim == 128 || head_dim == 256;
}

int64_t decode_num_partitions(int64_t num_tokens, int64_t num_heads, int64_t max_context, int64_t num_sms) {
  return partitions_for(num_tokens * num_heads, max_context, num_sms, kDecodeMinPartitionKeys);
}

int64_t decode_num_partitions(int64_t num_tokens, int64_t num_heads, int64_t num_kv_heads, int64_t head_dim,
                              int64_t max_context, int64_t num_sms) {
  if (!decode_group_supported(num_heads, num_kv_heads, head_dim))
    return decode_num_partitions(num_tokens, num_heads, max_context, num_sms);
  return partitions_for(num_tokens * num_kv_heads, max_context, num_sms, kDecodeMinGroupPartitionKeys);
}

int64_t decode_partition_keys(int64_t max_context, int64_t num_partitions) {
  const int64_t parts = std::max<int64_t>(1, num_partitions);
  return std::max<int64_t>(1, (max_context + parts - 1) / parts);
}

int64_t decode_workspace_floats(int64_t num_tokens, int64_t num_heads, int64_t head_dim, int64_t num_partitions) {
  if (num_partitions <= 1) return 0;
  return num_tokens * num_heads * num_partitions * (head_dim + 2);
}

namespace {

// The reduce kernel over num_partitions > 1 partials; out_scale: an fp8 cache's v_scale, else 1.
cudaError_t launch_reduce(const int32_t* tokens, int64_t num_tokens, int64_t num_heads, int64_t head_dim,
                          int64_t num_partitions, float out_scale, const float* workspace, float* out,
                          cudaStream_t stream) {
  if (num_tokens == 0 || num_partitions <= 1) return cudaSuccess;
  if (num_tokens < 0 || num_tokens > INT32_MAX || num_heads <= 0 || num_heads > 65535 || head_dim <= 0 ||
      num_partitions > kDecodeMaxPartitions || workspace == nullptr)
    return cudaErrorInvalidValue;
  return launch_dependent(decode_reduce_kernel,
                          dim3(static_cast<unsigned>(num_tokens), static_cast<unsigned>(num_heads)), dim3(128), 0,
                          stream, tokens, int(num_heads), int(head_dim), int(num_partitions), out_scale, workspace,
                          out);
}

template <typename CacheT>
cudaError_t launch_decode(const float* q, const CacheT* k_cache, const CacheT* v_cache, const int32_t* positions,
                          const int32_t* seq_of_token, const int32_t* tokens, int64_t num_tokens,
                          const int32_t* block_tables, int64_t max_blocks, int64_t block_size, int64_t num_heads,
                          int64_t num_kv_heads, int64_t head_dim, float scale, int64_t num_partitions,
                          int64_t partition_keys, float out_scale, float* workspace, float* out, cudaStream_t stream) {
  if (num_tokens == 0) return cudaSuccess;
  if (num_tokens < 0 || num_tokens > INT32_MAX || num_heads <= 0 || num_heads > 65535 || num_kv_heads <= 0 ||
      num_heads % num_kv_heads != 0 || block_size <= 0 || max_blocks <= 0 || !decode_attention_supports(head_dim) ||
      num_partitions < 1 || num_partitions > kDecodeMaxPartitions || partition_keys < 0 ||
      partition_keys * num_partitions > INT32_MAX || (num_partitions > 1 && workspace == nullptr))
    return cudaErrorInvalidValue;
  const dim3 grid(static_cast<unsigned>(num_tokens), static_cast<unsigned>(num_heads),
                  static_cast<unsigned>(num_partitions));
  if (decode_group_supported(num_heads, num_kv_heads, head_dim)) {
    const int64_t group = num_heads / num_kv_heads;
    const dim3 group_grid(static_cast<unsigned>(num_tokens), static_cast<unsigned>(num_kv_heads),
                          static_cast<unsigned>(num_partitions));
    switch (head_dim) {
      case 16:
        launch_group_d<16>(group, group_grid, stream, q, k_cache, v_cache, positions, seq_of_token, tokens,
                           block_tables, max_blocks, block_size, num_heads, num_kv_heads, scale, partition_keys,
                           out_scale, workspace, out);
        break;
      case 32:
        launch_group_d<32>(group, group_grid, stream, q, k_cache, v_cache, positions, seq_of_token, tokens,
                           block_tables, max_blocks, block_size, num_heads, num_kv_heads, scale, partition_keys,
                           out_scale, workspace, out);
        break;
      case 64:
        launch_group_d<64>(group, group_grid, stream, q, k_cache, v_cache, positions, seq_of_token, tokens,
                           block_tables, max_blocks, block_size, num_heads, num_kv_heads, scale, partition_keys,
                           out_scale, workspace, out);
        break;
      case 128:
        launch_group_d<128>(group, group_grid, stream, q, k_cache, v_cache, positions, seq_of_token, tokens,
                            block_tables, max_blocks, block_size, num_heads, num_kv_heads, scale, partition_keys,
                            out_scale, workspace, out);
        break;
      default:
        launch_group_d<256>(group, group_grid, stream, q, k_cache, v_cache, positions, seq_of_token, tokens,
                            block_tables, max_blocks, block_size, num_heads, num_kv_heads, scale, partition_keys,
                            out_scale, workspace, out);
        break;
    }
  } else {
    switch (head_dim) {
      case 16:
        launch<16>(grid, stream, q, k_cache, v_cache, positions, seq_of_token, tokens, block_tables, max_blocks,
                   block_size, num_heads, num_kv_heads, scale, partition_keys, out_scale, workspace, out);
        break;
      case 32:
        launch<32>(grid, stream, q, k_cache, v_cache, positions, seq_of_token, tokens, block_tables, max_blocks,
                   block_size, num_heads, num_kv_heads, scale, partition_keys, out_scale, workspace, out);
        break;
      case 64:
        launch<64>(grid, stream, q, k_cache, v_cache, positions, seq_of_token, tokens, block_tables, max_blocks,
                   block_size, num_heads, num_kv_heads, scale, partition_keys, out_scale, workspace, out);
        break;
      case 128:
        launch<128>(grid, stream, q, k_cache, v_cache, positions, seq_of_token, tokens, block_tables, max_blocks,
                    block_size, num_heads, num_kv_heads, scale, partition_keys, out_scale, workspace, out);
        break;
      default:
        launch<256>(grid, stream, q, k_cache, v_cache, positions, seq_of_token, tokens, block_tables, max_blocks,
                    block_size, num_heads, num_kv_heads, scale, partition_keys, out_scale, workspace, out);
        break;
    }
  }
  if (cudaError_t err = cudaGetLastError(); err != cudaSuccess || num_partitions == 1) return err;
  return launch_reduce(tokens, num_tokens, num_heads, head_dim, num_partitions, out_scale, workspace, out, stream);
}

}  // namespace

cudaError_t launch_decode_attention_reduce(const int32_t* tokens, int64_t num_tokens, int64_t num_heads,
                                           int64_t head_dim, int64_t num_partitions, const float* workspace,
                                           float* out, cudaStream_t stream) {
  return launch_reduce(tokens, num_tokens, num_heads, head_dim, num_partitions, 1.0f, workspace, out, stream);
}

cudaError_t launch_decode_attention_f32(const float* q, const float* k_cache, const float* v_cache,
                                        const int32_t* positions, const int32_t* seq_of_token, const int32_t* tokens,
                                        int64_t num_tokens, const int32_t* block_tables, int64_t max_blocks,
                                        int64_t block_size, int64_t num_heads, int64_t num_kv_heads,
                                        int64_t head_dim, float scale, int64_t num_partitions,
                                        int64_t partition_keys, float* workspace, float* out, cudaStream_t stream) {
  return launch_decode(q, k_cache, v_cache, positions, seq_of_token, tokens, num_tokens, block_tables, max_blocks,
                       block_size, num_heads, num_kv_heads, head_dim, scale, num_partitions, partition_keys, 1.0f,
                       workspace, out, stream);
}

cudaError_t launch_decode_attention_f32(const float* q, const uint16_t* k_cache, const uint16_t* v_cache,
                                        const int32_t* positions, const int32_t* seq_of_token, const int32_t* tokens,
                                        int64_t num_tokens, const int32_t* block_tables, int64_t max_blocks,
                                        int64_t block_size, int64_t num_heads, int64_t num_kv_heads,
                                        int64_t head_dim, float scale, int64_t num_partitions,
                                        int64_t partition_keys, float* workspace, float* out, cudaStream_t stream) {
  return launch_decode(q, reinterpret_cast<const __nv_bfloat16*>(k_cache),
                       reinterpret_cast<const __nv_bfloat16*>(v_cache), positions, seq_of_token, tokens, num_tokens,
                       block_tables, max_blocks, block_size, num_heads, num_kv_heads, head_dim, scale, num_partitions,
                       partition_keys, 1.0f, workspace, out, stream);
}

cudaError_t launch_decode_attention_f32(const float* q, const uint8_t* k_cache, const uint8_t* v_cache,
                                        const int32_t* positions, const int32_t* seq_of_token, const int32_t* tokens,
                                        int64_t num_tokens, const int32_t* block_tables, int64_t max_blocks,
                                        int64_t block_size, int64_t num_heads, int64_t num_kv_heads,
                                        int64_t head_dim, float scale, float k_scale, float v_scale,
                                        int64_t num_partitions, int64_t partition_keys, float* workspace, float* out,
                                        cudaStream_t stream) {
  return launch_decode(q, reinterpret_cast<const __nv_fp8_e4m3*>(k_cache),
                       reinterpret_cast<const __nv_fp8_e4m3*>(v_cache), positions, seq_of_token, tokens, num_tokens,
                       block_tables, max_blocks, block_size, num_heads, num_kv_heads, head_dim, scale * k_scale,
                       num_partitions, partition_keys, v_scale, workspace, out, stream);
}

}  // namespace troupe::kernels
