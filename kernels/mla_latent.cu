// The interleaved rope and MLA latent cache write kernels (mla_latent.hpp).
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>

#include "kernels/cuda_common.cuh"
#include "kernels/dependent_launch.cuh"
#include "kernels/mla_latent.hpp"

namespace troupe::kernels {
namespace {

__device__ __forceinline__ void cos_sin(int32_t pos, float inv_freq, float scale, float* c, float* s) {
  const float angle = float(pos) * inv_freq;
  *c = float(cos(double(angle))) * scale;
  *s = float(sin(double(angle))) * scale;
}

// More than 128 pairs: one block per (token, head); the rotary part is read whole into shared
// memory, then rewritten.
__global__ void rope_interleaved_kernel(float* x, const int32_t* positions, const float* inv_freq, int64_t num_heads,
                                        int64_t head_dim, int64_t half, float scale) {
  allow_dependents();
  wait_for_prerequisites();
  extern __shared__ float r_s[];  // [2 * half]
  const int64_t t = blockIdx.x, h = blockIdx.y;
  float* r = x + (t * num_heads + h) * head_dim + head_dim - 2 * half;
  for (int64_t i = threadIdx.x; i < 2 * half; i += blockDim.x) r_s[i] = r[i];
  __syncthreads();
  const int32_t pos = positions[t];
  for (int64_t i = threadIdx.x; i < half; i += blockDim.x) {
    float c, s;
    cos_sin(pos, inv_freq[i], scale, &c, &s);
    const float even = r_s[2 * i], odd = r_s[2 * i + 1];
    r[i] = even * c - odd * s;
    r[half + i] = odd * c + even * s;
  }
}

// Up to 128 rotary pairs (R1: 32): one warp per (token, head) row, 8 warps a block; from
// kRopeManyTokens tokens on, kRopeRowsPerWarp rows a warp, one after the other, the rotation's
// cos and sin kept in registers while the rows are the same token's (R1 has 128 heads a token: the
// fp64 cos/sin once a warp of 8 heads instead of once a row). Each lane holds its pairs in
// registers until the whole warp has read them, then writes (in place).
constexpr int kRopeRowsPerBlock = 8, kRopeMaxPairsPerLane = 4, kRopeRowsPerWarp = 8;
constexpr int64_t kRopeManyTokens = 64;
// Block `block`'s rows (after the wait), rows_per_warp (1 or kRopeRowsPerWarp) a warp. A warp past
// the last row returns.
__device__ __forceinline__ void rope_rows(float* x, const int32_t* positions, const float* inv_freq, int64_t rows,
                                          int64_t num_heads, int64_t head_dim, int64_t half, float scale,
                                          int64_t block, int rows_per_warp) {
  const int64_t first = (block * kRopeRowsPerBlock + threadIdx.x / 32) * rows_per_warp;
  const int lane = int(threadIdx.x % 32);
  int64_t token = -1;  // whose rotation c, s hold
  float c[kRopeMaxPairsPerLane], s[kRopeMaxPairsPerLane];
  for (int k = 0; k < rows_per_warp; ++k) {
    const int64_t row = first + k;
    if (row >= rows) return;  // the whole warp
    if (row / num_heads != token) {
      token = row / num_heads;
      const int32_t pos = positions[token];
#pragma unroll
      for (int j = 0; j < kRopeMaxPairsPerLane; ++j) {
        const int64_t i = lane + 32 * j;
        if (i < half) cos_sin(pos, inv_freq[i], scale, &c[j], &s[j]);
      }
    }
    float* r = x + row * head_dim + head_dim - 2 * half;
    float even[kRopeMaxPairsPerLane], odd[kRopeMaxPairsPerLane];
#pragma unroll
    for (int j = 0; j < kRopeMaxPairsPerLane; ++j) {
      const int64_t i = lane + 32 * j;
      if (i < half) {
        even[j] = r[2 * i];
        odd[j] = r[2 * i + 1];
      }
    }
    __syncwarp();
#pragma unroll
    for (int j = 0; j < kRopeMaxPairsPerLane; ++j) {
      const int64_t i = lane + 32 * j;
      if (i >= half) continue;
      r[i] = even[j] * c[j] - odd[j] * s[j];
      r[half + i] = odd[j] * c[j] + even[j] * s[j];
    }
    __syncwarp();  // this row's writes before the next row's reads (other rows: no overlap)
  }
}

// The rows a warp ropes for n tokens, and the blocks for `rows` rows.
int rope_rows_per_warp(int64_t n) { return n >= kRopeManyTokens ? kRopeRowsPerWarp : 1; }
int64_t rope_blocks(int64_t rows, int rows_per_warp) {
  const int64_t per_block = int64_t(kRopeRowsPerBlock) * rows_per_warp;
  return (rows + per_block - 1) / per_block;
}

__global__ void rope_interleaved_rows_kernel(float* x, const int32_t* positions, const float* inv_freq, int64_t rows,
                                             int64_t num_heads, int64_t head_dim, int64_t half, float scale,
                                             int rows_per_warp) {
  allow_dependents();
  wait_for_prerequisites();
  rope_rows(x, positions, inv_freq, rows, num_heads, head_dim, half, scale, blockIdx.x, rows_per_warp);
}

// Token t's cache entry (after the wait; every thread of the block, kThreads of them): the RMS of
// the latent, then the normed latent and the roped k_pe.
template <typename CacheT>
__device__ __forceinline__ void write_latent(const float* kv_a, const float* weight, float eps, const int32_t* positions,
                                             const float* inv_freq, float scale, const int32_t* slots, int64_t kv_lora,
                                             int64_t half, CacheT* cache, int64_t t) {
  const int64_t entry = kv_lora + 2 * half;
  const float* row = kv_a + t * entry;
  CacheT* out = cache + int64_t(slots[t]) * entry;
  float sum_sq = 0.0f;
  for (int64_t i = threadIdx.x; i < kv_lora; i += kThreads) sum_sq += row[i] * row[i];
  const float inv = rsqrtf(block_sum(sum_sq) / float(kv_lora) + eps);
  for (int64_t i = threadIdx.x; i < kv_lora; i += kThreads) store(out + i, row[i] * inv * weight[i]);
  const float* r = row + kv_lora;
  const int32_t pos = positions[t];
  for (int64_t i = threadIdx.x; i < half; i += kThreads) {
    float c, s;
    cos_sin(pos, inv_freq[i], scale, &c, &s);
    const float even = r[2 * i], odd = r[2 * i + 1];
    store(out + kv_lora + i, even * c - odd * s);
    store(out + kv_lora + half + i, odd * c + even * s);
  }
}

// One block per token.
template <typename CacheT>
__global__ void mla_write_latent_kernel(const float* kv_a, const float* weight, float eps, const int32_t* positions,
                                        const float* inv_freq, float scale, const int32_t* slots, int64_t kv_lora,
                                        int64_t half, CacheT* cache) {
  allow_dependents();
  wait_for_prerequisites();
  write_latent(kv_a, weight, eps, positions, inv_freq, scale, slots, kv_lora, half, cache, blockIdx.x);
}

// Both in one launch: blocks [0, n) write the tokens' cache entries, the rest rope q's rows (the
// rows kernel's blocks), kThreads threads each.
static_assert(kThreads == 32 * kRopeRowsPerBlock, "one block size for both parts");
template <typename CacheT>
__global__ void mla_rope_write_latent_kernel(float* q, int64_t q_rows, int64_t q_heads, int64_t q_head_dim,
                                             const float* kv_a, const float* weight, float eps,
                                             const int32_t* positions, const float* inv_freq, float scale,
                                             const int32_t* slots, int64_t n, int64_t kv_lora, int64_t half,
                                             CacheT* cache, int rows_per_warp) {
  allow_dependents();
  wait_for_prerequisites();
  if (int64_t(blockIdx.x) < n) {
    write_latent(kv_a, weight, eps, positions, inv_freq, scale, slots, kv_lora, half, cache, blockIdx.x);
  } else {
    rope_rows(q, positions, inv_freq, q_rows, q_heads, q_head_dim, half, scale, int64_t(blockIdx.x) - n,
              rows_per_warp);
  }
}

template <typename CacheT>
cudaError_t launch_write(const float* kv_a, const float* weight, float eps, const int32_t* positions,
                         const float* inv_freq, float scale, const int32_t* slots, int64_t n, int64_t kv_lora,
                         int64_t half, CacheT* cache, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (bad_rows(n) || kv_lora <= 0 || half < 0) return cudaErrorInvalidValue;
  return launch_dependent(mla_write_latent_kernel<CacheT>, dim3(unsigned(n)), dim3(kThreads), 0, stream, kv_a, weight,
                          eps, positions, inv_freq, scale, slots, kv_lora, half, cache);
}

template <typename CacheT>
cudaError_t launch_rope_write(float* q, int64_t q_heads, int64_t q_head_dim, const float* kv_a, const float* weight,
                              float eps, const int32_t* positions, const float* inv_freq, float scale,
                              const int32_t* slots, int64_t n, int64_t kv_lora, int64_t half, CacheT* cache,
                              cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (bad_rows(n) || kv_lora <= 0 || half < 1 || half > 32 * kRopeMaxPairsPerLane || 2 * half > q_head_dim ||
      q_heads <= 0 || q_heads > 65535 || !q || !kv_a || !weight || !positions || !inv_freq || !slots || !cache)
    return cudaErrorInvalidValue;
  const int rows_per_warp = rope_rows_per_warp(n);
  const int64_t rows = n * q_heads, blocks = rope_blocks(rows, rows_per_warp);
  if (n + blocks > INT32_MAX) return cudaErrorInvalidValue;
  return launch_dependent(mla_rope_write_latent_kernel<CacheT>, dim3(unsigned(n + blocks)), dim3(kThreads), 0,
                          stream, q, rows, q_heads, q_head_dim, kv_a, weight, eps, positions, inv_freq, scale, slots, n,
                          kv_lora, half, cache, rows_per_warp);
}

}  // namespace

cudaError_t launch_mla_rope_write_latent_f32(float* q, int64_t q_heads, int64_t q_head_dim, const float* kv_a,
                                             const float* norm_weight, float eps, const int32_t* positions,
                                             const float* inv_freq, float scale, const int32_t* slots, int64_t n,
                                             int64_t kv_lora, int64_t half, float* cache, cudaStream_t stream) {
  return launch_rope_write(q, q_heads, q_head_dim, kv_a, norm_weight, eps, positions, inv_freq, scale, slots, n,
                           kv_lora, half, cache, stream);
}

cudaError_t launch_mla_rope_write_latent_f32(float* q, int64_t q_heads, int64_t q_head_dim, const float* kv_a,
                                             const float* norm_weight, float eps, const int32_t* positions,
                                             const float* inv_freq, float scale, const int32_t* slots, int64_t n,
                                             int64_t kv_lora, int64_t half, uint16_t* cache, cudaStream_t stream) {
  return launch_rope_write(q, q_heads, q_head_dim, kv_a, norm_weight, eps, positions, inv_freq, scale, slots, n,
                           kv_lora, half, reinterpret_cast<__nv_bfloat16*>(cache), stream);
}

cudaError_t launch_rope_interleaved_f32(float* x, const int32_t* positions, const float* inv_freq, int64_t n,
                                        int64_t num_heads, int64_t head_dim, int64_t half, float scale,
                                        cudaStream_t stream) {
  if (n == 0 || half == 0) return cudaSuccess;
  if (bad_rows(n) || half < 0 || 2 * half > head_dim || num_heads <= 0 || num_heads > 65535 || half > 4096)
    return cudaErrorInvalidValue;
  if (half <= 32 * kRopeMaxPairsPerLane) {
    // A block per (token, head) of 32 threads left the GPU mostly idle at prefill sizes (R1: 0.64 ms
    // for 4,096 tokens x 128 heads on the H200); a warp per row (from 64 tokens, 8 rows in turn),
    // 8 warps a block.
    const int rows_per_warp = rope_rows_per_warp(n);
    const int64_t rows = n * num_heads, blocks = rope_blocks(rows, rows_per_warp);
    if (blocks > INT32_MAX) return cudaErrorInvalidValue;
    return launch_dependent(rope_interleaved_rows_kernel, dim3(unsigned(blocks)), dim3(32 * kRopeRowsPerBlock), 0,
                            stream, x, positions, inv_freq, rows, num_heads, head_dim, half, scale, rows_per_warp);
  }
  const unsigned threads = unsigned(std::min<int64_t>((half + 31) / 32 * 32, kThreads));
  return launch_dependent(rope_interleaved_kernel, dim3(unsigned(n), unsigned(num_heads)), dim3(threads),
                          size_t(2 * half) * sizeof(float), stream, x, positions, inv_freq, num_heads, head_dim, half,
                          scale);
}

cudaError_t launch_mla_write_latent_f32(const float* kv_a, const float* norm_weight, float eps,
                                        const int32_t* positions, const float* inv_freq, float scale,
                                        const int32_t* slots, int64_t n, int64_t kv_lora, int64_t half, float* cache,
                                        cudaStream_t stream) {
  return launch_write(kv_a, norm_weight, eps, positions, inv_freq, scale, slots, n, kv_lora, half, cache, stream);
}

cudaError_t launch_mla_write_latent_f32(const float* kv_a, const float* norm_weight, float eps,
                                        const int32_t* positions, const float* inv_freq, float scale,
                                        const int32_t* slots, int64_t n, int64_t kv_lora, int64_t half,
                                        uint16_t* cache, cudaStream_t stream) {
  return launch_write(kv_a, norm_weight, eps, positions, inv_freq, scale, slots, n, kv_lora, half,
                      reinterpret_cast<__nv_bfloat16*>(cache), stream);
}

}  // namespace troupe::kernels
