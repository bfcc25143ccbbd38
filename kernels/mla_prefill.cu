// MLA prefill kernels: the latent gather and the fp32 SIMT expanded attention (mla_prefill.hpp;
// the tensor-core one is mla_prefill_mma.cu).
#include <cuda_bf16.h>

#include <cfloat>
#include <cstdint>
#include <type_traits>

#include "kernels/cuda_common.cuh"
#include "kernels/dependent_launch.cuh"
#include "kernels/mla_prefill.hpp"

namespace troupe::kernels {
namespace {

constexpr int kMaxDimsPerLane = 8;  // qk and v dims <= 256
constexpr int kAttentionWarps = kThreads / 32;

template <typename OutT, typename InT>
__device__ __forceinline__ OutT convert(InT v) {
  if constexpr (std::is_same_v<OutT, InT>) {
    return v;
  } else {
    return load(&v);  // bf16 -> fp32
  }
}

// One block per cached position j.
template <typename CacheT, typename OutT>
__global__ void mla_gather_latent_kernel(const CacheT* cache, const int32_t* table, int64_t block_size,
                                         int64_t kv_lora, int64_t rope, OutT* latent, OutT* k_pe) {
  allow_dependents();
  wait_for_prerequisites();
  const int64_t j = blockIdx.x, entry = kv_lora + rope;
  const CacheT* e = cache + (int64_t(table[j / block_size]) * block_size + j % block_size) * entry;
  for (int64_t c = threadIdx.x; c < entry; c += blockDim.x) {
    const OutT v = convert<OutT>(e[c]);
    if (c < kv_lora) {
      latent[j * kv_lora + c] = v;
    } else {
      k_pe[j * rope + c - kv_lora] = v;
    }
  }
}

// One block per (query i, head h); warp w takes keys w, w + 8, ... with an online softmax, lanes
// splitting the qk dims (k = [k_nope from kv | k_pe]) and the v dims; then the block merges.
__global__ void mla_prefill_attention_kernel(const float* q, const float* kv, const float* k_pe, int64_t num_new,
                                             int64_t ctx, int64_t num_heads, int64_t nope, int64_t rope,
                                             int64_t v_dim, float scale, float* out) {
  allow_dependents();
  wait_for_prerequisites();
  __shared__ float part_max[kAttentionWarps], part_sum[kAttentionWarps];
  __shared__ float warp_acc[kAttentionWarps][32 * kMaxDimsPerLane];
  const int64_t i = blockIdx.x, h = blockIdx.y;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t qk = nope + rope, per_head = nope + v_dim, row = num_heads * per_head;
  const float* qh = q + (i * num_heads + h) * qk;
  float qv[kMaxDimsPerLane], acc[kMaxDimsPerLane];
#pragma unroll
  for (int d = 0; d < kMaxDimsPerLane; ++d) {
    const int64_t dim = lane + 32 * d;
    qv[d] = dim < qk ? qh[dim] : 0.0f;
    acc[d] = 0.0f;
  }
  float running_max = -FLT_MAX, running_sum = 0.0f;
  const int64_t last = ctx - num_new + i;
  for (int64_t j = warp; j <= last; j += kAttentionWarps) {
    const float* kj = kv + j * row + h * per_head;
    const float* pe = k_pe + j * rope;
    float dot = 0.0f;
#pragma unroll
    for (int d = 0; d < kMaxDimsPerLane; ++d) {
      const int64_t dim = lane + 32 * d;
      if (dim < nope) {
        dot += qv[d] * kj[dim];
      } else if (dim < qk) {
        dot += qv[d] * pe[dim - nope];
      }
    }
    const float score = warp_sum(dot) * scale;
    const float new_max = fmaxf(running_max, score);
    const float correction = __expf(running_max - new_max);
    const float p = __expf(score - new_max);
    running_sum = running_sum * correction + p;
#pragma unroll
    for (int d = 0; d < kMaxDimsPerLane; ++d) {
      const int64_t dim = lane + 32 * d;
      acc[d] = acc[d] * correction + (dim < v_dim ? p * kj[nope + dim] : 0.0f);
    }
    running_max = new_max;
  }
  if (lane == 0) {
    part_max[warp] = running_max;
    part_sum[warp] = running_sum;
  }
#pragma unroll
  for (int d = 0; d < kMaxDimsPerLane; ++d) warp_acc[warp][lane + 32 * d] = acc[d];
  __syncthreads();
  float block_max = -FLT_MAX;
  for (int w = 0; w < kAttentionWarps; ++w) block_max = fmaxf(block_max, part_max[w]);
  float total = 0.0f;
  for (int w = 0; w < kAttentionWarps; ++w) total += part_sum[w] * __expf(part_max[w] - block_max);
  float* oh = out + (i * num_heads + h) * v_dim;
  for (int64_t dim = threadIdx.x; dim < v_dim; dim += kThreads) {
    float value = 0.0f;
    for (int w = 0; w < kAttentionWarps; ++w) value += warp_acc[w][dim] * __expf(part_max[w] - block_max);
    oh[dim] = value / total;
  }
}

template <typename CacheT, typename OutT>
cudaError_t launch_gather(const CacheT* cache, const int32_t* table, int64_t block_size, int64_t ctx, int64_t kv_lora,
                          int64_t rope, OutT* latent, OutT* k_pe, cudaStream_t stream) {
  if (ctx == 0) return cudaSuccess;
  if (bad_rows(ctx) || block_size <= 0 || kv_lora <= 0 || rope < 0) return cudaErrorInvalidValue;
  return launch_dependent(mla_gather_latent_kernel<CacheT, OutT>, dim3(unsigned(ctx)), dim3(128), 0, stream, cache, table,
                          block_size, kv_lora, rope, latent, k_pe);
}

}  // namespace

bool mla_prefill_supports(int64_t nope, int64_t rope, int64_t v_dim) {
  return nope >= 0 && rope >= 0 && nope + rope > 0 && nope + rope <= 32 * kMaxDimsPerLane && v_dim > 0 &&
         v_dim <= 32 * kMaxDimsPerLane;
}

cudaError_t launch_mla_gather_latent_f32(const float* cache, const int32_t* table, int64_t block_size, int64_t ctx,
                                         int64_t kv_lora, int64_t rope, float* latent, float* k_pe,
                                         cudaStream_t stream) {
  return launch_gather(cache, table, block_size, ctx, kv_lora, rope, latent, k_pe, stream);
}

cudaError_t launch_mla_gather_latent_f32(const uint16_t* cache, const int32_t* table, int64_t block_size,
                                         int64_t ctx, int64_t kv_lora, int64_t rope, float* latent, float* k_pe,
                                         cudaStream_t stream) {
  return launch_gather(reinterpret_cast<const __nv_bfloat16*>(cache), table, block_size, ctx, kv_lora, rope, latent,
                       k_pe, stream);
}

cudaError_t launch_mla_prefill_attention_f32(const float* q, const float* kv, const float* k_pe, int64_t num_new,
                                             int64_t ctx, int64_t num_heads, int64_t nope, int64_t rope,
                                             int64_t v_dim, float scale, float* out, cudaStream_t stream) {
  if (num_new == 0 || ctx == 0) return cudaSuccess;
  if (!mla_prefill_supports(nope, rope, v_dim) || num_new < 0 || num_new > ctx || bad_rows(num_new) ||
      num_heads <= 0 || num_heads > 65535)
    return cudaErrorInvalidValue;
  return launch_dependent(mla_prefill_attention_kernel, dim3(unsigned(num_new), unsigned(num_heads)), dim3(kThreads),
                          0, stream, q, kv, k_pe, num_new, ctx, num_heads, nope, rope, v_dim, scale, out);
}

cudaError_t launch_mla_gather_latent_bf16(const uint16_t* cache, const int32_t* table, int64_t block_size,
                                          int64_t ctx, int64_t kv_lora, int64_t rope, uint16_t* latent,
                                          uint16_t* k_pe, cudaStream_t stream) {
  return launch_gather(reinterpret_cast<const __nv_bfloat16*>(cache), table, block_size, ctx, kv_lora, rope,
                       reinterpret_cast<__nv_bfloat16*>(latent), reinterpret_cast<__nv_bfloat16*>(k_pe), stream);
}

}  // namespace troupe::kernels
