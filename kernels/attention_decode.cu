#include <algorithm>
#include <cmath>

#include "kernels/attention_decode.hpp"

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

__device__ __forceinline__ float4 fma4(float4 acc, float c, float p, float4 v) {
  return make_float4(acc.x * c + p * v.x, acc.y * c + p * v.y, acc.z * c + p * v.z, acc.w * c + p * v.w);
}

// One block per (query i, q head, partition). Lane group g takes keys begin + g, begin + g +
// kGroups, ... with its own online softmax (log2 domain); the block then merges its groups.
template <int D>
__global__ void __launch_bounds__(kThreads)
    decode_attention_kernel(const float* __restrict__ q, const float* __restrict__ k_cache,
                            const float* __restrict__ v_cache, const int32_t* __restrict__ positions,
                            const int32_t* __restrict__ seq_of_token, const int32_t* __restrict__ tokens,
                            const int32_t* __restrict__ block_tables, int max_blocks, int block_size, int num_heads,
                            int num_kv_heads, float scale_log2, int partition_keys, float* __restrict__ workspace,
                            float* __restrict__ out) {
  using S = DecodeShape<D>;
  __shared__ float m_s[S::kGroups], l_s[S::kGroups], w_s[S::kGroups];
  __shared__ __align__(16) float acc_s[S::kGroups][D];
  const int i = blockIdx.x, h = blockIdx.y, part = blockIdx.z, num_partitions = gridDim.z;
  const int64_t t = tokens ? tokens[i] : i;
  const int32_t* table = block_tables + int64_t(seq_of_token[t]) * max_blocks;
  const int context = positions[t] + 1;
  const int begin = part * partition_keys, end = min(context, begin + partition_keys);
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
          const float4 k4 = __ldg(reinterpret_cast<const float4*>(k_cache + offset + c));
          vv[u][v] = __ldg(reinterpret_cast<const float4*>(v_cache + offset + c));
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
      out[(t * num_heads + h) * D + c] = value / total;
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

// One block per (query i, q head): merges the partitions' partial results.
__global__ void decode_reduce_kernel(const int32_t* __restrict__ tokens, int num_heads, int head_dim,
                                     int num_partitions, const float* __restrict__ workspace, float* __restrict__ out) {
  __shared__ float w_s[kDecodeMaxPartitions];
  __shared__ float total_s;
  const int i = blockIdx.x, h = blockIdx.y;
  const int64_t t = tokens ? tokens[i] : i;
  const int64_t item = int64_t(i) * num_heads + h;
  const int64_t stats = int64_t(gridDim.x) * num_heads * num_partitions;
  const float* maxima = workspace + stats * head_dim + item * num_partitions;
  const float* sums = maxima + stats;
  if (threadIdx.x == 0) {
    float block_max = -INFINITY;
    for (int p = 0; p < num_partitions; ++p) block_max = fmaxf(block_max, maxima[p]);
    const float max_use = block_max == -INFINITY ? 0.0f : block_max;
    float total = 0.0f;
    for (int p = 0; p < num_partitions; ++p) {
      w_s[p] = exp2f(maxima[p] - max_use);
      total += sums[p] * w_s[p];
    }
    total_s = total;
  }
  __syncthreads();
  const float inv = 1.0f / total_s;
  const float* partial = workspace + item * num_partitions * head_dim;
  for (int c = threadIdx.x; c < head_dim; c += blockDim.x) {
    float value = 0.0f;
    for (int p = 0; p < num_partitions; ++p) value += partial[int64_t(p) * head_dim + c] * w_s[p];
    out[(t * num_heads + h) * head_dim + c] = value * inv;
  }
}

template <int D>
void launch(dim3 grid, cudaStream_t stream, const float* q, const float* k_cache, const float* v_cache,
            const int32_t* positions, const int32_t* seq_of_token, const int32_t* tokens, const int32_t* block_tables,
            int64_t max_blocks, int64_t block_size, int64_t num_heads, int64_t num_kv_heads, float scale,
            int64_t partition_keys, float* workspace, float* out) {
  decode_attention_kernel<D><<<grid, kThreads, 0, stream>>>(
      q, k_cache, v_cache, positions, seq_of_token, tokens, block_tables, int(max_blocks), int(block_size),
      int(num_heads), int(num_kv_heads), scale * kLog2e, int(partition_keys), workspace, out);
}

}  // namespace

bool decode_attention_supports(int64_t head_dim) {
  return head_dim == 16 || head_dim == 32 || head_dim == 64 || head_dim == 128 || head_dim == 256;
}

int64_t decode_num_partitions(int64_t num_tokens, int64_t num_heads, int64_t max_context, int64_t num_sms) {
  const int64_t items = num_tokens * num_heads;
  if (items <= 0 || max_context <= kDecodeMinPartitionKeys) return 1;
  const int64_t wanted = (2 * std::max<int64_t>(1, num_sms) + items - 1) / items;
  const int64_t by_length = (max_context + kDecodeMinPartitionKeys - 1) / kDecodeMinPartitionKeys;
  const int64_t parts = std::clamp<int64_t>(std::min(wanted, by_length), 1, kDecodeMaxPartitions);
  // Drop partitions that would be empty for the longest context.
  const int64_t keys = decode_partition_keys(max_context, parts);
  return (max_context + keys - 1) / keys;
}

int64_t decode_partition_keys(int64_t max_context, int64_t num_partitions) {
  const int64_t parts = std::max<int64_t>(1, num_partitions);
  return std::max<int64_t>(1, (max_context + parts - 1) / parts);
}

int64_t decode_workspace_floats(int64_t num_tokens, int64_t num_heads, int64_t head_dim, int64_t num_partitions) {
  if (num_partitions <= 1) return 0;
  return num_tokens * num_heads * num_partitions * (head_dim + 2);
}

cudaError_t launch_decode_attention_f32(const float* q, const float* k_cache, const float* v_cache,
                                        const int32_t* positions, const int32_t* seq_of_token, const int32_t* tokens,
                                        int64_t num_tokens, const int32_t* block_tables, int64_t max_blocks,
                                        int64_t block_size, int64_t num_heads, int64_t num_kv_heads,
                                        int64_t head_dim, float scale, int64_t num_partitions,
                                        int64_t partition_keys, float* workspace, float* out, cudaStream_t stream) {
  if (num_tokens == 0) return cudaSuccess;
  if (num_tokens < 0 || num_tokens > INT32_MAX || num_heads <= 0 || num_heads > 65535 || num_kv_heads <= 0 ||
      num_heads % num_kv_heads != 0 || block_size <= 0 || max_blocks <= 0 || !decode_attention_supports(head_dim) ||
      num_partitions < 1 || num_partitions > kDecodeMaxPartitions || partition_keys < 1 ||
      partition_keys * num_partitions > INT32_MAX || (num_partitions > 1 && workspace == nullptr))
    return cudaErrorInvalidValue;
  const dim3 grid(static_cast<unsigned>(num_tokens), static_cast<unsigned>(num_heads),
                  static_cast<unsigned>(num_partitions));
  switch (head_dim) {
    case 16:
      launch<16>(grid, stream, q, k_cache, v_cache, positions, seq_of_token, tokens, block_tables, max_blocks,
                 block_size, num_heads, num_kv_heads, scale, partition_keys, workspace, out);
      break;
    case 32:
      launch<32>(grid, stream, q, k_cache, v_cache, positions, seq_of_token, tokens, block_tables, max_blocks,
                 block_size, num_heads, num_kv_heads, scale, partition_keys, workspace, out);
      break;
    case 64:
      launch<64>(grid, stream, q, k_cache, v_cache, positions, seq_of_token, tokens, block_tables, max_blocks,
                 block_size, num_heads, num_kv_heads, scale, partition_keys, workspace, out);
      break;
    case 128:
      launch<128>(grid, stream, q, k_cache, v_cache, positions, seq_of_token, tokens, block_tables, max_blocks,
                  block_size, num_heads, num_kv_heads, scale, partition_keys, workspace, out);
      break;
    default:
      launch<256>(grid, stream, q, k_cache, v_cache, positions, seq_of_token, tokens, block_tables, max_blocks,
                  block_size, num_heads, num_kv_heads, scale, partition_keys, workspace, out);
      break;
  }
  if (cudaError_t err = cudaGetLastError(); err != cudaSuccess || num_partitions == 1) return err;
  decode_reduce_kernel<<<dim3(static_cast<unsigned>(num_tokens), static_cast<unsigned>(num_heads)), 128, 0, stream>>>(
      tokens, int(num_heads), int(head_dim), int(num_partitions), workspace, out);
  return cudaGetLastError();
}

}  // namespace troupe::kernels
