// The fallback paged attention kernel (paged_attention.hpp).
#include <cuda_bf16.h>

#include <cfloat>
#include <cstdint>

#include "kernels/cuda_common.cuh"
#include "kernels/dependent_launch.cuh"
#include "kernels/paged_attention.hpp"

namespace troupe::kernels {
namespace {

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
                                       float out_scale, float* out) {
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
    oh[dim] = value / total * out_scale;  // out_scale: an fp8 cache's v_scale, else 1
  }
}

template <typename CacheT>
cudaError_t launch_paged_attention(const float* q, const CacheT* k_cache, const CacheT* v_cache,
                                   const int32_t* positions, const int32_t* seq_of_token, const int32_t* block_tables,
                                   int64_t max_blocks, int64_t block_size, int64_t n, int64_t num_heads,
                                   int64_t num_kv_heads, int64_t head_dim, float scale, float out_scale, float* out,
                                   cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (head_dim > 32 * kMaxDimsPerLane || num_kv_heads <= 0 || num_heads % num_kv_heads != 0) return cudaErrorInvalidValue;
  const int64_t num_blocks = n * num_heads;
  if (num_blocks > INT32_MAX) return cudaErrorInvalidValue;
  paged_attention_kernel<<<unsigned(num_blocks), kThreads, 0, stream>>>(q, k_cache, v_cache, positions, seq_of_token,
                                                                        block_tables, max_blocks, block_size, num_heads,
                                                                        num_kv_heads, head_dim, scale, out_scale, out);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_paged_attention_f32(const float* q, const float* k_cache, const float* v_cache,
                                       const int32_t* positions, const int32_t* seq_of_token,
                                       const int32_t* block_tables, int64_t max_blocks, int64_t block_size,
                                       int64_t n, int64_t num_heads, int64_t num_kv_heads, int64_t head_dim,
                                       float scale, float* out, cudaStream_t stream) {
  return launch_paged_attention(q, k_cache, v_cache, positions, seq_of_token, block_tables, max_blocks, block_size, n,
                                num_heads, num_kv_heads, head_dim, scale, 1.0f, out, stream);
}

cudaError_t launch_paged_attention_f32(const float* q, const uint16_t* k_cache, const uint16_t* v_cache,
                                       const int32_t* positions, const int32_t* seq_of_token,
                                       const int32_t* block_tables, int64_t max_blocks, int64_t block_size,
                                       int64_t n, int64_t num_heads, int64_t num_kv_heads, int64_t head_dim,
                                       float scale, float* out, cudaStream_t stream) {
  return launch_paged_attention(q, reinterpret_cast<const __nv_bfloat16*>(k_cache),
                                reinterpret_cast<const __nv_bfloat16*>(v_cache), positions, seq_of_token, block_tables,
                                max_blocks, block_size, n, num_heads, num_kv_heads, head_dim, scale, 1.0f, out, stream);
}

cudaError_t launch_paged_attention_f32(const float* q, const uint8_t* k_cache, const uint8_t* v_cache,
                                       const int32_t* positions, const int32_t* seq_of_token,
                                       const int32_t* block_tables, int64_t max_blocks, int64_t block_size,
                                       int64_t n, int64_t num_heads, int64_t num_kv_heads, int64_t head_dim,
                                       float scale, float k_scale, float v_scale, float* out, cudaStream_t stream) {
  return launch_paged_attention(q, reinterpret_cast<const __nv_fp8_e4m3*>(k_cache),
                                reinterpret_cast<const __nv_fp8_e4m3*>(v_cache), positions, seq_of_token, block_tables,
                                max_blocks, block_size, n, num_heads, num_kv_heads, head_dim, scale * k_scale, v_scale,
                                out, stream);
}

}  // namespace troupe::kernels
