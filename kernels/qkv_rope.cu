#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <cstdint>

#include "kernels/dependent_launch.cuh"
#include "kernels/qkv_rope.hpp"

namespace troupe::kernels {
namespace {

constexpr int kMaxThreads = 256;
constexpr int64_t kMaxHalf = 4096;  // the cos/sin table of a token lives in shared memory (32 KiB)
// A block's heads' inverse RMS lives beside the table (4 KiB more, under the 48 KiB default).
constexpr int64_t kMaxHeadsPerBlock = 1024;

// V consecutive floats, loaded and stored as one float, float2 or float4 access.
template <int V>
struct alignas(4 * V) Pack {
  float v[V];
};

template <int V>
__device__ Pack<V> load(const float* p) {
  return *reinterpret_cast<const Pack<V>*>(p);
}

// `scale` is an fp8 cache's; fp32 (q_out, an fp32 cache) and bf16 are stored unscaled.
template <int V>
__device__ void store(float* p, const Pack<V>& x, float) {
  *reinterpret_cast<Pack<V>*>(p) = x;
}

// V consecutive bf16 (a bf16 cache), rounded to nearest even, as one 2, 4 or 8-byte store.
template <int V>
struct alignas(2 * V) Bf16Pack {
  __nv_bfloat16 v[V];
};

template <int V>
__device__ void store(__nv_bfloat16* p, const Pack<V>& x, float) {
  Bf16Pack<V> y;
#pragma unroll
  for (int e = 0; e < V; ++e) y.v[e] = __float2bfloat16_rn(x.v[e]);
  *reinterpret_cast<Bf16Pack<V>*>(p) = y;
}

// V consecutive e4m3 bytes (an fp8 cache): e4m3(x / scale), nearest even, saturated to +-448 (the
// reference's host_f32_to_e4m3 of the same quotient), as one 1, 2 or 4-byte store.
template <int V>
struct alignas(V) Fp8Pack {
  __nv_fp8_storage_t v[V];
};

template <int V>
__device__ void store(__nv_fp8_e4m3* p, const Pack<V>& x, float scale) {
  Fp8Pack<V> y;
#pragma unroll
  for (int e = 0; e < V; ++e) y.v[e] = __nv_cvt_float_to_fp8(x.v[e] / scale, __NV_SATFINITE, __NV_E4M3);
  *reinterpret_cast<Fp8Pack<V>*>(p) = y;
}

// A q or k head's V dims from `src`, times inv_rms * weight where the head is normed (weight
// non-null; the same product order as the reference: (x * inv_rms) * w).
template <int V>
__device__ Pack<V> load_normed(const float* src, const float* weight, float inv_rms) {
  Pack<V> x = load<V>(src);
  if (weight) {
    const Pack<V> w = load<V>(weight);
#pragma unroll
    for (int e = 0; e < V; ++e) x.v[e] = x.v[e] * inv_rms * w.v[e];
  }
  return x;
}

// Item i of a q or k head: i < half rotates dims [i, i + V) with their partners at + half; the
// others copy dims [half + i, half + i + V) (past the rotary part). weight: the head's norm
// weight or null (then inv_rms is unused).
template <int V, typename T>
__device__ void rope_item(const float* src, T* dst, int i, int half, const float* cos_table, const float* sin_table,
                          const float* weight, float inv_rms, float scale) {
  if (i < half) {
    const Pack<V> x1 = load_normed<V>(src + i, weight ? weight + i : nullptr, inv_rms);
    const Pack<V> x2 = load_normed<V>(src + i + half, weight ? weight + i + half : nullptr, inv_rms);
    const Pack<V> c = load<V>(cos_table + i), s = load<V>(sin_table + i);
    Pack<V> o1, o2;
#pragma unroll
    for (int e = 0; e < V; ++e) {
      o1.v[e] = x1.v[e] * c.v[e] - x2.v[e] * s.v[e];
      o2.v[e] = x2.v[e] * c.v[e] + x1.v[e] * s.v[e];
    }
    store<V>(dst + i, o1, scale);
    store<V>(dst + i + half, o2, scale);
  } else {
    store<V>(dst + half + i, load_normed<V>(src + half + i, weight ? weight + half + i : nullptr, inv_rms), scale);
  }
}

// inv_rms[h - h0] = 1 / sqrt(mean(x^2) + eps) over each normed rope head h in [h0, r_end) of the
// row: a warp per head (heads strided over the block's warps), fp32 sums reduced by shuffles.
// Heads without a weight are skipped (never read). blockDim.x is a multiple of 32, so every lane
// of a warp takes part in its shuffles.
template <int V>
__device__ void heads_inv_rms(const float* row, int h0, int r_end, int num_heads, int head_dim, HeadNorms norms,
                              float* inv_rms) {
  const int lane = threadIdx.x % 32, num_warps = blockDim.x / 32;
  for (int h = h0 + int(threadIdx.x / 32); h < r_end; h += num_warps) {
    if (!(h < num_heads ? norms.q_weight : norms.k_weight)) continue;  // uniform over the warp
    const float* head = row + int64_t(h) * head_dim;
    float sum_sq = 0.0f;
    for (int i = lane * V; i < head_dim; i += 32 * V) {
      const Pack<V> x = load<V>(head + i);
#pragma unroll
      for (int e = 0; e < V; ++e) sum_sq += x.v[e] * x.v[e];
    }
    for (int offset = 16; offset > 0; offset /= 2) sum_sq += __shfl_xor_sync(0xffffffffu, sum_sq, offset);
    if (lane == 0) inv_rms[h - h0] = rsqrtf(sum_sq / float(head_dim) + norms.eps);
  }
}

// Grid (n, head groups): block (t, g) handles heads [g * heads_per_block, ...) of token t, counted
// over the fused row (q heads, then k heads, then v heads). A q or k head is (head_dim - half) / V
// items: item j < half / V rotates dims [jV, jV + V) with their partners at + half, the others copy
// the dims past the rotary part. A v head is head_dim / V plain copies. Consecutive threads take
// consecutive items of a head, so every access is coalesced. With norms, the block first finds
// its normed heads' inverse RMS (heads_inv_rms), and every item scales its loads by it and the
// weight before rotating. CacheT: float, bf16 (a bf16 cache) or e4m3 (an fp8 cache, k_scale and
// v_scale dividing what it stores).
template <int V, typename CacheT>
__global__ void qkv_rope_write_kv_kernel(const float* __restrict__ qkv, const int32_t* __restrict__ positions,
                                         const float* __restrict__ inv_freq, const int32_t* __restrict__ slot_mapping,
                                         CacheT* k_cache, CacheT* v_cache, float* q_out, int num_heads,
                                         int num_kv_heads, int head_dim, int half, int heads_per_block, float k_scale,
                                         float v_scale, HeadNorms norms) {
  allow_dependents();
  wait_for_prerequisites();
  extern __shared__ float4 table_storage[];
  float* cos_table = reinterpret_cast<float*>(table_storage);  // [half], then sin [half]
  float* sin_table = cos_table + half;
  float* inv_rms = sin_table + half;  // [heads_per_block]: the block's heads from h0
  const int64_t t = blockIdx.x;
  const int rope_heads = num_heads + num_kv_heads, total_heads = rope_heads + num_kv_heads;
  const int h0 = int(blockIdx.y) * heads_per_block, h1 = min(total_heads, h0 + heads_per_block);
  const int64_t slot = slot_mapping[t];
  const float* row = qkv + t * total_heads * head_dim;

  if (h0 < rope_heads) {  // uniform over the block
    const int r_end = min(h1, rope_heads);
    // The same formula as CpuBackend::rope: an fp32 angle, cos/sin in double, rounded to fp32.
    const float pos = float(positions[t]);
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
      const float angle = pos * inv_freq[i];
      cos_table[i] = float(cos(double(angle)));
      sin_table[i] = float(sin(double(angle)));
    }
    if (norms.q_weight || norms.k_weight) heads_inv_rms<V>(row, h0, r_end, num_heads, head_dim, norms, inv_rms);
    __syncthreads();
    const int items = (head_dim - half) / V;
    for (int idx = threadIdx.x; idx < (r_end - h0) * items; idx += blockDim.x) {
      const int h = h0 + idx / items, i = (idx % items) * V;
      const float* src = row + int64_t(h) * head_dim;
      const float* weight = h < num_heads ? norms.q_weight : norms.k_weight;
      const float inv = weight ? inv_rms[h - h0] : 1.0f;
      if (h < num_heads) {
        rope_item<V>(src, q_out + (t * num_heads + h) * head_dim, i, half, cos_table, sin_table, weight, inv, 1.0f);
      } else {
        rope_item<V>(src, k_cache + (slot * num_kv_heads + (h - num_heads)) * head_dim, i, half, cos_table,
                     sin_table, weight, inv, k_scale);
      }
    }
  }
  const int v_begin = max(h0, rope_heads), items = head_dim / V;
  for (int idx = threadIdx.x; idx < (h1 - v_begin) * items; idx += blockDim.x) {
    const int h = v_begin + idx / items, i = (idx % items) * V;
    CacheT* dst = v_cache + (slot * num_kv_heads + (h - rope_heads)) * head_dim;
    store<V>(dst + i, load<V>(row + int64_t(h) * head_dim + i), v_scale);
  }
}

bool aligned(const void* p, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

template <int V, typename CacheT>
cudaError_t launch(const float* qkv, const int32_t* positions, const float* inv_freq, const int32_t* slot_mapping,
                   CacheT* k_cache, CacheT* v_cache, float* q_out, int64_t n, int64_t num_heads, int64_t num_kv_heads,
                   int64_t head_dim, int64_t half, float k_scale, float v_scale, HeadNorms norms,
                   cudaStream_t stream) {
  const int64_t total_heads = num_heads + 2 * num_kv_heads;
  // Few tokens (decode): a token's heads are split over several blocks, so even one token spreads
  // over SMs. Many tokens (prefill): one block per token, which computes its cos/sin table once.
  const int64_t wanted_groups = std::clamp<int64_t>(256 / n, 1, total_heads);
  const int64_t heads_per_block = std::min((total_heads + wanted_groups - 1) / wanted_groups, kMaxHeadsPerBlock);
  const int64_t groups = (total_heads + heads_per_block - 1) / heads_per_block;
  if (groups > 65535) return cudaErrorInvalidValue;  // gridDim.y's limit
  const int64_t items = heads_per_block * head_dim / V;  // the most one block has (all v heads)
  const int threads = int(std::clamp<int64_t>((items + 31) / 32 * 32, 64, kMaxThreads));
  const dim3 grid{unsigned(n), unsigned(groups)};
  const size_t smem_bytes = size_t(2 * half + heads_per_block) * sizeof(float);  // cos, sin, inv_rms
  return launch_dependent(qkv_rope_write_kv_kernel<V, CacheT>, grid, dim3(unsigned(threads)), smem_bytes, stream,
                          qkv, positions, inv_freq, slot_mapping, k_cache, v_cache, q_out, int(num_heads),
                          int(num_kv_heads), int(head_dim), int(half), int(heads_per_block), k_scale, v_scale, norms);
}

template <typename CacheT>
cudaError_t launch_any(const float* qkv, const int32_t* positions, const float* inv_freq, const int32_t* slot_mapping,
                       CacheT* k_cache, CacheT* v_cache, float* q_out, int64_t n, int64_t num_heads,
                       int64_t num_kv_heads, int64_t head_dim, int64_t half, float k_scale, float v_scale,
                       HeadNorms norms, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (n < 0 || n > INT32_MAX || num_heads <= 0 || num_kv_heads <= 0 || head_dim <= 0 || half < 0 ||
      2 * half > head_dim || half > kMaxHalf || !(k_scale > 0.0f) || !(v_scale > 0.0f))
    return cudaErrorInvalidValue;
  if ((num_heads + 2 * num_kv_heads) * head_dim > INT32_MAX) return cudaErrorInvalidValue;
  if (!qkv || !positions || !slot_mapping || !k_cache || !v_cache || !q_out || (half > 0 && !inv_freq))
    return cudaErrorInvalidValue;
  if ((norms.q_weight || norms.k_weight) && !(norms.eps >= 0.0f)) return cudaErrorInvalidValue;
  // The widest access every row start allows (row starts are multiples of head_dim floats; a null
  // norm weight counts as aligned).
  auto all_aligned = [&](uintptr_t bytes) {
    return aligned(qkv, bytes) && aligned(k_cache, bytes) && aligned(v_cache, bytes) && aligned(q_out, bytes) &&
           aligned(norms.q_weight, bytes) && aligned(norms.k_weight, bytes);
  };
  if (head_dim % 4 == 0 && half % 4 == 0 && all_aligned(16))
    return launch<4>(qkv, positions, inv_freq, slot_mapping, k_cache, v_cache, q_out, n, num_heads, num_kv_heads,
                     head_dim, half, k_scale, v_scale, norms, stream);
  if (head_dim % 2 == 0 && half % 2 == 0 && all_aligned(8))
    return launch<2>(qkv, positions, inv_freq, slot_mapping, k_cache, v_cache, q_out, n, num_heads, num_kv_heads,
                     head_dim, half, k_scale, v_scale, norms, stream);
  return launch<1>(qkv, positions, inv_freq, slot_mapping, k_cache, v_cache, q_out, n, num_heads, num_kv_heads,
                   head_dim, half, k_scale, v_scale, norms, stream);
}

}  // namespace

cudaError_t launch_qkv_rope_write_kv_f32(const float* qkv, const int32_t* positions, const float* inv_freq,
                                         const int32_t* slot_mapping, float* k_cache, float* v_cache, float* q_out,
                                         int64_t n, int64_t num_heads, int64_t num_kv_heads, int64_t head_dim,
                                         int64_t half, HeadNorms norms, cudaStream_t stream) {
  return launch_any(qkv, positions, inv_freq, slot_mapping, k_cache, v_cache, q_out, n, num_heads, num_kv_heads,
                    head_dim, half, 1.0f, 1.0f, norms, stream);
}

cudaError_t launch_qkv_rope_write_kv_f32(const float* qkv, const int32_t* positions, const float* inv_freq,
                                         const int32_t* slot_mapping, uint16_t* k_cache, uint16_t* v_cache,
                                         float* q_out, int64_t n, int64_t num_heads, int64_t num_kv_heads,
                                         int64_t head_dim, int64_t half, HeadNorms norms, cudaStream_t stream) {
  return launch_any(qkv, positions, inv_freq, slot_mapping, reinterpret_cast<__nv_bfloat16*>(k_cache),
                    reinterpret_cast<__nv_bfloat16*>(v_cache), q_out, n, num_heads, num_kv_heads, head_dim, half,
                    1.0f, 1.0f, norms, stream);
}

cudaError_t launch_qkv_rope_write_kv_f32(const float* qkv, const int32_t* positions, const float* inv_freq,
                                         const int32_t* slot_mapping, uint8_t* k_cache, uint8_t* v_cache,
                                         float* q_out, int64_t n, int64_t num_heads, int64_t num_kv_heads,
                                         int64_t head_dim, int64_t half, float k_scale, float v_scale,
                                         HeadNorms norms, cudaStream_t stream) {
  return launch_any(qkv, positions, inv_freq, slot_mapping, reinterpret_cast<__nv_fp8_e4m3*>(k_cache),
                    reinterpret_cast<__nv_fp8_e4m3*>(v_cache), q_out, n, num_heads, num_kv_heads, head_dim, half,
                    k_scale, v_scale, norms, stream);
}

}  // namespace troupe::kernels
