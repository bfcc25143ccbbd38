// The absorbed MLA decode kernel (fp32 SIMT), its combine kernel, and the launcher that picks it or
// the tensor-core kernel of mla_decode_mma.cu (mla_decode.hpp).
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <type_traits>

#include "kernels/dependent_launch.cuh"
#include "kernels/mla_decode.hpp"
#include "kernels/split_kv_partials.cuh"

namespace troupe::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kHeadsPerWarp = 8;               // kWarps * kHeadsPerWarp == kMlaHeadTile
constexpr int kKeys = int(kMlaKeyTile);        // 16: lanes l % 8 = head, l / 8 = key group of 4 keys
constexpr int kMaxEntry = 640;                 // kv_lora + rope
constexpr int kMaxUnits = (kKeys * kMaxEntry / 4 + kThreads - 1) / kThreads;  // 4-element loads per thread
constexpr float kLog2e = 1.4426950408889634f;
static_assert(kWarps * kHeadsPerWarp == kMlaHeadTile, "a CTA's warps cover its head tile");

// Four cache elements as fp32 (bf16 widened exactly).
__device__ __forceinline__ float4 load4(const float* p) { return __ldg(reinterpret_cast<const float4*>(p)); }
__device__ __forceinline__ float4 load4(const __nv_bfloat16* p) {
  const uint2 bits = __ldg(reinterpret_cast<const uint2*>(p));
  return make_float4(__uint_as_float(bits.x << 16), __uint_as_float(bits.x & 0xffff0000u),
                     __uint_as_float(bits.y << 16), __uint_as_float(bits.y & 0xffff0000u));
}

__device__ __forceinline__ float dot4(float4 a, float4 b) { return a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w; }

// Shared memory of one CTA, in floats: q [ht, entry + 4] (padded: the 8 heads a quarter-warp reads
// fall in distinct banks), the staged entries [kKeys, entry], probabilities [ht, kKeys], per-head
// correction, max and sum [ht] each.
__host__ __device__ inline int q_stride(int entry) { return entry + 4; }
inline size_t smem_bytes(int ht, int entry) {
  return sizeof(float) * (size_t(ht) * q_stride(entry) + size_t(kKeys) * entry + size_t(ht) * kKeys + 3 * size_t(ht));
}

// One CTA per (head tile x, token y, partition z). kVec: float4 column chunks per lane (lane l owns
// columns 128 k + 4 l .. + 3, k < kVec), so kv_lora <= 128 kVec.
template <int kVec, typename CacheT>
__global__ void __launch_bounds__(kThreads)
    mla_decode_kernel(const float* __restrict__ q_abs, const CacheT* __restrict__ cache,
                      const int32_t* __restrict__ positions, const int32_t* __restrict__ seq_of_token,
                      const int32_t* __restrict__ tokens, const int32_t* __restrict__ block_tables, int max_blocks,
                      int block_size, int num_heads, int kv_lora, int entry, int ht, float scale_log2,
                      int partition_keys, int min_keys, float* __restrict__ workspace, float* __restrict__ o_lat) {
  allow_dependents();
  wait_for_prerequisites();
  extern __shared__ __align__(16) float smem[];
  const int qs_stride = q_stride(entry);
  float* qs = smem;                        // [ht, qs_stride]
  float* es = qs + ht * qs_stride;         // [kKeys, entry]
  float* ps = es + kKeys * entry;          // [ht, kKeys]
  float* corr_s = ps + ht * kKeys;         // [ht]
  float* max_s = corr_s + ht;              // [ht]
  float* sum_s = max_s + ht;               // [ht]

  const int h0 = blockIdx.x * int(kMlaHeadTile), i = blockIdx.y, part = blockIdx.z, num_partitions = gridDim.z;
  const int heads = min(int(kMlaHeadTile), num_heads - h0);  // valid heads of this tile (<= ht)
  const int64_t t = tokens ? tokens[i] : i;
  const int32_t* table = block_tables + int64_t(seq_of_token[t]) * max_blocks;
  const int context = positions[t] + 1;
  const int keys = split_kv::partition_length(context, num_partitions, partition_keys, min_keys);
  const int begin = part * keys, end = min(context, begin + keys);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int units = kKeys * (entry / 4), row_units = entry / 4;

  // q of the tile's heads, times scale * log2(e); rows past `heads` are zero.
  const float* qsrc = q_abs + (int64_t(i) * num_heads + h0) * entry;
  for (int u = threadIdx.x; u < ht * row_units; u += kThreads) {
    const int h = u / row_units, c = (u % row_units) * 4;
    float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (h < heads) v = __ldg(reinterpret_cast<const float4*>(qsrc + int64_t(h) * entry + c));
    *reinterpret_cast<float4*>(qs + h * qs_stride + c) =
        make_float4(v.x * scale_log2, v.y * scale_log2, v.z * scale_log2, v.w * scale_log2);
  }

  // Staging: the 4-element units of keys [base, base + kKeys); keys at or past `end` are zero.
  float4 pre[kMaxUnits];
  auto fetch = [&](int base) {
#pragma unroll
    for (int k = 0; k < kMaxUnits; ++k) {
      const int u = threadIdx.x + k * kThreads;
      pre[k] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      if (u < units) {
        const int j = base + u / row_units;
        if (j < end) {
          const int64_t slot = int64_t(table[j / block_size]) * block_size + j % block_size;
          pre[k] = load4(cache + slot * entry + (u % row_units) * 4);
        }
      }
    }
  };

  const bool active = warp * kHeadsPerWarp < heads;  // warp-uniform
  const int hl = lane % kHeadsPerWarp, kq = lane / kHeadsPerWarp;  // score phase: head, key group
  const int hs = warp * kHeadsPerWarp + hl;                          // its row in qs / ps
  float m = -INFINITY, l = 0.0f;                                     // head hs's running max / sum
  float4 acc[kHeadsPerWarp][kVec];
#pragma unroll
  for (int hh = 0; hh < kHeadsPerWarp; ++hh)
#pragma unroll
    for (int v = 0; v < kVec; ++v) acc[hh][v] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);

  if (begin < end) fetch(begin);
  for (int base = begin; base < end; base += kKeys) {
    __syncthreads();  // the previous tile's readers are done with es (and qs is written)
#pragma unroll
    for (int k = 0; k < kMaxUnits; ++k) {
      const int u = threadIdx.x + k * kThreads;
      if (u < units) *reinterpret_cast<float4*>(es + (u / row_units) * entry + (u % row_units) * 4) = pre[k];
    }
    __syncthreads();
    if (base + kKeys < end) fetch(base + kKeys);  // in flight while this tile computes
    if (!active) continue;

    // Scores of head hs against keys kq + 4 u (log2 domain).
    float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    const float* qrow = qs + hs * qs_stride;
    for (int c = 0; c < entry; c += 4) {
      const float4 q4 = *reinterpret_cast<const float4*>(qrow + c);
#pragma unroll
      for (int u = 0; u < 4; ++u) s[u] += dot4(q4, *reinterpret_cast<const float4*>(es + (kq + 4 * u) * entry + c));
    }
    float tile_max = -INFINITY;
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      if (base + kq + 4 * u >= end) s[u] = -INFINITY;
      tile_max = fmaxf(tile_max, s[u]);
    }
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 8));
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 16));
    const float m_new = fmaxf(m, tile_max);  // finite: key `base` is valid
    const float corr = exp2f(m - m_new);      // 0 on the first tile
    float psum = 0.0f;
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const float p = exp2f(s[u] - m_new);  // 0 past the end
      psum += p;
      ps[hs * kKeys + kq + 4 * u] = p;
    }
    psum += __shfl_xor_sync(0xffffffffu, psum, 8);
    psum += __shfl_xor_sync(0xffffffffu, psum, 16);
    l = l * corr + psum;
    m = m_new;
    if (kq == 0) corr_s[hs] = corr;
    __syncwarp();

    // o_lat[8 heads, lane's columns] = corr * o_lat + sum_j p[h, j] * latent_j.
    const float* pw = ps + warp * kHeadsPerWarp * kKeys;
#pragma unroll
    for (int hh = 0; hh < kHeadsPerWarp; ++hh) {
      const float cf = corr_s[warp * kHeadsPerWarp + hh];
#pragma unroll
      for (int v = 0; v < kVec; ++v) acc[hh][v] = make_float4(acc[hh][v].x * cf, acc[hh][v].y * cf,
                                                              acc[hh][v].z * cf, acc[hh][v].w * cf);
    }
#pragma unroll 4
    for (int j = 0; j < kKeys; ++j) {
      float4 e[kVec];
#pragma unroll
      for (int v = 0; v < kVec; ++v) {
        const int c = 128 * v + 4 * lane;
        e[v] = c < kv_lora ? *reinterpret_cast<const float4*>(es + j * entry + c) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      }
#pragma unroll
      for (int hh = 0; hh < kHeadsPerWarp; ++hh) {
        const float p = pw[hh * kKeys + j];
#pragma unroll
        for (int v = 0; v < kVec; ++v) {
          acc[hh][v].x += p * e[v].x;
          acc[hh][v].y += p * e[v].y;
          acc[hh][v].z += p * e[v].z;
          acc[hh][v].w += p * e[v].w;
        }
      }
    }
    __syncwarp();  // ps and corr_s are rewritten by the next tile
  }
  if (!active) return;
  if (kq == 0) {
    max_s[hs] = m;
    sum_s[hs] = l;
  }
  __syncwarp();
#pragma unroll
  for (int hh = 0; hh < kHeadsPerWarp; ++hh) {
    const int h = warp * kHeadsPerWarp + hh;
    if (h >= heads) break;
    const int64_t item = int64_t(i) * num_heads + h0 + h;
    const float inv = num_partitions == 1 ? 1.0f / sum_s[h] : 1.0f;
    float* dst = num_partitions == 1 ? o_lat + item * kv_lora : workspace + (item * num_partitions + part) * kv_lora;
#pragma unroll
    for (int v = 0; v < kVec; ++v) {
      const int c = 128 * v + 4 * lane;
      if (c < kv_lora)
        *reinterpret_cast<float4*>(dst + c) =
            make_float4(acc[hh][v].x * inv, acc[hh][v].y * inv, acc[hh][v].z * inv, acc[hh][v].w * inv);
    }
    if (num_partitions > 1 && lane == 0) {
      const int64_t stats = int64_t(gridDim.y) * num_heads * num_partitions;
      float* maxima = workspace + stats * kv_lora;
      maxima[item * num_partitions + part] = max_s[h];
      maxima[stats + item * num_partitions + part] = sum_s[h];
    }
  }
}

// One block of 128 threads per (token i, head, 128 columns): merges the partitions' partial results
// (log2-domain maxima). Warp 0 takes the weights (lanes over partitions); then thread t sums its
// column over the partitions, eight partitions' loads in flight. Spreading the columns over four
// blocks (not four columns a thread) keeps batch-1 steps, whose 128 heads x up to 128 partitions
// are all the combine has, from waiting on one SM's round trips per head.
constexpr int kCombineThreads = 128;
__global__ void __launch_bounds__(kCombineThreads)
    mla_combine_kernel(int num_heads, int kv_lora, int num_partitions, const float* __restrict__ workspace,
                       float* __restrict__ o_lat) {
  allow_dependents();
  wait_for_prerequisites();
  __shared__ float w_s[kMlaMaxPartitions];
  __shared__ float inv_s;
  __shared__ int used_s;
  const int64_t item = int64_t(blockIdx.x) * num_heads + blockIdx.y;
  const int64_t stats = int64_t(gridDim.x) * num_heads * num_partitions;
  const float* maxima = workspace + stats * kv_lora + item * num_partitions;
  const float* sums = maxima + stats;
  if (threadIdx.x < 32) {
    const split_kv::Weights wt = split_kv::weigh(maxima, sums, num_partitions, int(threadIdx.x), w_s);
    if (threadIdx.x == 0) inv_s = wt.inv, used_s = wt.used;
  }
  __syncthreads();
  const int c = int(blockIdx.z) * kCombineThreads + int(threadIdx.x);
  if (c >= kv_lora) return;
  const float inv = inv_s;
  const float acc = split_kv::merge_column(workspace + item * num_partitions * kv_lora + c, kv_lora, used_s, w_s);
  o_lat[item * kv_lora + c] = acc * inv;
}

template <int kVec, typename CacheT>
cudaError_t launch_tiles(dim3 grid, size_t smem, cudaStream_t stream, const float* q_abs, const CacheT* cache,
                         const int32_t* positions, const int32_t* seq_of_token, const int32_t* tokens,
                         const int32_t* block_tables, int64_t max_blocks, int64_t block_size, int64_t num_heads,
                         int64_t kv_lora, int64_t entry, int ht, float scale, int64_t partition_keys, float* workspace,
                         float* o_lat) {
  auto kernel = mla_decode_kernel<kVec, CacheT>;
  if (cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
      err != cudaSuccess)
    return err;
  return launch_dependent(kernel, grid, dim3(kThreads), smem, stream, q_abs, cache, positions, seq_of_token, tokens,
                          block_tables, int(max_blocks), int(block_size), int(num_heads), int(kv_lora), int(entry), ht,
                          scale * kLog2e, int(partition_keys), split_kv::split_min_keys(kMlaMinPartitionKeys),
                          workspace, o_lat);
}

template <typename CacheT>
cudaError_t launch_decode(const float* q_abs, const CacheT* cache, const int32_t* positions,
                          const int32_t* seq_of_token, const int32_t* tokens, int64_t num_tokens,
                          const int32_t* block_tables, int64_t max_blocks, int64_t block_size, int64_t num_heads,
                          int64_t kv_lora, int64_t rope, float scale, int64_t num_partitions,
                          int64_t partition_keys, float* workspace, float* o_lat, cudaStream_t stream,
                          bool merge_partials) {
  if (num_tokens == 0) return cudaSuccess;
  if (num_tokens < 0 || num_tokens > 65535 || num_heads <= 0 || num_heads > 65535 * kMlaHeadTile ||
      !mla_decode_supports(kv_lora, rope) || block_size <= 0 || max_blocks <= 0 || num_partitions < 1 ||
      num_partitions > kMlaMaxPartitions || partition_keys < 0 || partition_keys * num_partitions > INT32_MAX ||
      (num_partitions > 1 && workspace == nullptr))
    return cudaErrorInvalidValue;
  const int64_t entry = kv_lora + rope;
  const int ht = int((std::min(num_heads, kMlaHeadTile) + kHeadsPerWarp - 1) / kHeadsPerWarp * kHeadsPerWarp);
  const size_t smem = smem_bytes(ht, int(entry));
  const dim3 grid(unsigned((num_heads + kMlaHeadTile - 1) / kMlaHeadTile), unsigned(num_tokens),
                  unsigned(num_partitions));
  bool use_mma = false;
  if constexpr (std::is_same_v<CacheT, __nv_bfloat16>)
    use_mma = mla_decode_kernel_for(kv_lora, rope, true) == MlaDecodeKernel::mma_bf16 &&
              reinterpret_cast<uintptr_t>(cache) % 16 == 0 && reinterpret_cast<uintptr_t>(q_abs) % 16 == 0;
  cudaError_t err;
  if (use_mma) {
    err = launch_mla_decode_mma_partials(q_abs, reinterpret_cast<const uint16_t*>(cache), positions, seq_of_token,
                                         tokens, num_tokens, block_tables, max_blocks, block_size, num_heads, kv_lora,
                                         rope, scale, num_partitions, partition_keys, workspace, o_lat, stream);
  } else if (kv_lora <= 128) {
    err = launch_tiles<1>(grid, smem, stream, q_abs, cache, positions, seq_of_token, tokens, block_tables, max_blocks,
                          block_size, num_heads, kv_lora, entry, ht, scale, partition_keys, workspace, o_lat);
  } else {
    err = launch_tiles<4>(grid, smem, stream, q_abs, cache, positions, seq_of_token, tokens, block_tables, max_blocks,
                          block_size, num_heads, kv_lora, entry, ht, scale, partition_keys, workspace, o_lat);
  }
  if (err != cudaSuccess || num_partitions == 1 || !merge_partials) return err;
  return launch_mla_decode_combine_f32(workspace, num_tokens, num_heads, kv_lora, num_partitions, o_lat, stream);
}

}  // namespace

cudaError_t launch_mla_decode_combine_f32(const float* workspace, int64_t num_tokens, int64_t num_heads,
                                          int64_t kv_lora, int64_t num_partitions, float* o_lat, cudaStream_t stream) {
  if (num_tokens == 0) return cudaSuccess;
  if (!workspace || !o_lat || num_tokens < 0 || num_tokens > INT32_MAX || num_heads < 1 || num_heads > 65535 ||
      kv_lora < 1 || kv_lora > kMlaMaxLora || num_partitions < 2 || num_partitions > kMlaMaxPartitions)
    return cudaErrorInvalidValue;
  const dim3 combine_grid(unsigned(num_tokens), unsigned(num_heads),
                          unsigned((kv_lora + kCombineThreads - 1) / kCombineThreads));
  return launch_dependent(mla_combine_kernel, combine_grid, dim3(kCombineThreads), 0, stream, int(num_heads),
                          int(kv_lora), int(num_partitions), workspace, o_lat);
}

bool mla_decode_supports(int64_t kv_lora, int64_t rope) {
  return kv_lora >= 4 && kv_lora <= kMlaMaxLora && kv_lora % 4 == 0 && rope >= 0 && rope % 4 == 0 &&
         kv_lora + rope <= kMaxEntry;
}

MlaDecodeKernel mla_decode_kernel_for(int64_t kv_lora, int64_t rope, bool bf16_cache) {
  return bf16_cache && mla_decode_mma_supports(kv_lora, rope) ? MlaDecodeKernel::mma_bf16 : MlaDecodeKernel::simt_f32;
}

int64_t mla_decode_head_tile(int64_t num_tokens, int64_t num_heads, int64_t num_sms) {
  const int64_t whole = std::min(std::max<int64_t>(num_heads, 1), kMlaHeadTile);
  if (const char* env = std::getenv("TROUPE_MLA_DECODE_HEAD_TILE")) {
    const int64_t forced = std::atoll(env);
    if (forced == 16 || forced == 32 || forced == 64) return std::min(forced, whole);
  }
  const int64_t tiles = num_tokens * ((num_heads + kMlaHeadTile - 1) / kMlaHeadTile);
  return whole > kMlaSmallHeadTile && tiles * 8 <= num_sms ? kMlaSmallHeadTile : whole;
}

int64_t mla_decode_num_partitions(int64_t num_tokens, int64_t num_heads, int64_t max_context, int64_t num_sms) {
  const int64_t tile = mla_decode_head_tile(num_tokens, num_heads, num_sms);
  const int64_t items = num_tokens * ((num_heads + tile - 1) / tile);
  if (items <= 0 || max_context <= kMlaMinPartitionKeys) return 1;
  const int64_t sms = std::max<int64_t>(1, num_sms);
  const int64_t by_length = std::min<int64_t>(max_context / kMlaMinPartitionKeys, kMlaMaxPartitions);
  // Cost in key-rows of one SM: waves x (keys per CTA + a fixed cost of about one 64-key tile for
  // loading Q and writing o_lat, + about two more for the fp32 partials and their combine).
  int64_t best = 1;
  double best_cost = 0;
  for (int64_t p = 1; p <= by_length; ++p) {
    const int64_t keys = mla_decode_partition_keys(max_context, p);
    if (p > 1 && (max_context + keys - 1) / keys < p) continue;  // an empty partition for the longest context
    const double waves = double((items * p + sms - 1) / sms);
    const double cost = waves * double(keys + kMlaMinPartitionKeys + (p > 1 ? 2 * kMlaMinPartitionKeys : 0));
    if (p == 1 || cost < best_cost) {
      best = p;
      best_cost = cost;
    }
  }
  return best;
}

int64_t mla_decode_partition_keys(int64_t max_context, int64_t num_partitions) {
  const int64_t parts = std::max<int64_t>(1, num_partitions);
  return std::max<int64_t>(1, (max_context + parts - 1) / parts);
}

int64_t mla_decode_workspace_floats(int64_t num_tokens, int64_t num_heads, int64_t kv_lora, int64_t num_partitions) {
  if (num_partitions <= 1) return 0;
  return num_tokens * num_heads * num_partitions * (kv_lora + 2);
}

cudaError_t launch_mla_decode_f32(const float* q_abs, const float* cache, const int32_t* positions,
                                  const int32_t* seq_of_token, const int32_t* tokens, int64_t num_tokens,
                                  const int32_t* block_tables, int64_t max_blocks, int64_t block_size,
                                  int64_t num_heads, int64_t kv_lora, int64_t rope, float scale,
                                  int64_t num_partitions, int64_t partition_keys, float* workspace, float* o_lat,
                                  cudaStream_t stream, bool merge_partials) {
  return launch_decode(q_abs, cache, positions, seq_of_token, tokens, num_tokens, block_tables, max_blocks,
                       block_size, num_heads, kv_lora, rope, scale, num_partitions, partition_keys, workspace, o_lat,
                       stream, merge_partials);
}

cudaError_t launch_mla_decode_f32(const float* q_abs, const uint16_t* cache, const int32_t* positions,
                                  const int32_t* seq_of_token, const int32_t* tokens, int64_t num_tokens,
                                  const int32_t* block_tables, int64_t max_blocks, int64_t block_size,
                                  int64_t num_heads, int64_t kv_lora, int64_t rope, float scale,
                                  int64_t num_partitions, int64_t partition_keys, float* workspace, float* o_lat,
                                  cudaStream_t stream, bool merge_partials) {
  return launch_decode(q_abs, reinterpret_cast<const __nv_bfloat16*>(cache), positions, seq_of_token, tokens,
                       num_tokens, block_tables, max_blocks, block_size, num_heads, kv_lora, rope, scale,
                       num_partitions, partition_keys, workspace, o_lat, stream, merge_partials);
}

}  // namespace troupe::kernels
