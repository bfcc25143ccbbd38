// The MoE gather and combine kernels (moe_combine.hpp): one block per row.
#include <algorithm>
#include <cstdint>

#include "kernels/cuda_common.cuh"
#include "kernels/dependent_launch.cuh"
#include "kernels/moe_combine.hpp"

namespace troupe::kernels {
namespace {

constexpr int kRowThreads = 128;

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Copies row sorted_slots[p] / top_k of x to row p of x_perm; Vec: the unit copied (uint4 when
// the rows allow 16-byte accesses, else the element).
template <class Vec>
__global__ void __launch_bounds__(kRowThreads)
    moe_gather_kernel(const Vec* x, const int32_t* sorted_slots, Vec* x_perm, int32_t top_k, int64_t row_vecs) {
  const int32_t slot = sorted_slots[blockIdx.x];
  if (slot < 0) return;  // padding
  const Vec* src = x + int64_t(slot / top_k) * row_vecs;
  Vec* dst = x_perm + int64_t(blockIdx.x) * row_vecs;
  for (int64_t i = threadIdx.x; i < row_vecs; i += kRowThreads) dst[i] = src[i];
}

template <class T>
cudaError_t launch_gather(const T* x, const int32_t* sorted_slots, T* x_perm, int64_t num_positions, int32_t top_k,
                          int64_t hidden, cudaStream_t stream) {
  if (num_positions < 0 || hidden < 0 || top_k < 1 || bad_rows(num_positions)) return cudaErrorInvalidValue;
  if (num_positions == 0 || hidden == 0) return cudaSuccess;
  const int64_t row_bytes = hidden * int64_t(sizeof(T));
  if (row_bytes % 16 == 0 && aligned16(x) && aligned16(x_perm)) {
    moe_gather_kernel<<<unsigned(num_positions), kRowThreads, 0, stream>>>(
        reinterpret_cast<const uint4*>(x), sorted_slots, reinterpret_cast<uint4*>(x_perm), top_k, row_bytes / 16);
  } else {
    moe_gather_kernel<<<unsigned(num_positions), kRowThreads, 0, stream>>>(x, sorted_slots, x_perm, top_k, hidden);
  }
  return cudaGetLastError();
}

// Four consecutive values of a y row as fp32.
__device__ __forceinline__ float4 load4(const float* p) { return *reinterpret_cast<const float4*>(p); }
__device__ __forceinline__ float4 load4(const __nv_bfloat16* p) {
  const uint2 bits = *reinterpret_cast<const uint2*>(p);
  const float2 lo = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&bits.x));
  const float2 hi = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&bits.y));
  return make_float4(lo.x, lo.y, hi.x, hi.y);
}

// kWide: each thread handles 4 consecutive columns (hidden % 4 == 0, aligned rows).
template <class T, bool kWide>
__global__ void __launch_bounds__(kRowThreads)
    moe_combine_kernel(const T* y_perm, const int32_t* slot_pos, const float* weights, const float* shared,
                       float* out, int32_t top_k, int64_t hidden) {
  allow_dependents();  // a programmatic dependent (launch_dependent): nothing read before the wait
  wait_for_prerequisites();
  // Row t; blockIdx.y picks the block's columns (so a batch of one token still fills many SMs).
  const int64_t t = blockIdx.x;
  const int32_t* pos = slot_pos + t * top_k;
  const float* w = weights + t * top_k;
  const int64_t step = int64_t(kRowThreads) * gridDim.y;
  const int64_t first = int64_t(blockIdx.y) * kRowThreads + threadIdx.x;
  if constexpr (kWide) {
    for (int64_t h = 4 * first; h < hidden; h += 4 * step) {
      float4 acc = shared ? *reinterpret_cast<const float4*>(shared + t * hidden + h) : make_float4(0, 0, 0, 0);
      // Up to 8 slots' rows loaded before their fmas (one memory latency per 8 slots, not per slot);
      // the fmas keep the slot order.
      for (int32_t i0 = 0; i0 < top_k; i0 += 8) {
        float4 y[8];
#pragma unroll
        for (int32_t j = 0; j < 8; ++j) {
          const int32_t p = i0 + j < top_k ? pos[i0 + j] : -1;
          y[j] = p >= 0 ? load4(y_perm + int64_t(p) * hidden + h) : make_float4(0, 0, 0, 0);
        }
#pragma unroll
        for (int32_t j = 0; j < 8; ++j) {
          if (i0 + j >= top_k || pos[i0 + j] < 0) continue;
          const float wi = w[i0 + j];
          acc.x = fmaf(wi, y[j].x, acc.x);
          acc.y = fmaf(wi, y[j].y, acc.y);
          acc.z = fmaf(wi, y[j].z, acc.z);
          acc.w = fmaf(wi, y[j].w, acc.w);
        }
      }
      *reinterpret_cast<float4*>(out + t * hidden + h) = acc;
    }
  } else {
    for (int64_t h = first; h < hidden; h += step) {
      float acc = shared ? shared[t * hidden + h] : 0.0f;
      for (int32_t i = 0; i < top_k; ++i) {
        const int32_t p = pos[i];
        if (p >= 0) acc = fmaf(w[i], load(y_perm + int64_t(p) * hidden + h), acc);
      }
      out[t * hidden + h] = acc;
    }
  }
}

template <class T>
cudaError_t launch_combine(const T* y_perm, const int32_t* slot_pos, const float* weights, const float* shared,
                           float* out, int64_t num_tokens, int32_t top_k, int64_t hidden, cudaStream_t stream) {
  if (num_tokens < 0 || hidden < 0 || top_k < 1 || bad_rows(num_tokens)) return cudaErrorInvalidValue;
  if (num_tokens == 0 || hidden == 0) return cudaSuccess;
  // 16-byte fp32 rows; bf16 y rows of 4 values are 8 bytes (aligned when y_perm is 16-byte aligned).
  const bool wide = hidden % 4 == 0 && aligned16(y_perm) && aligned16(out) && (shared == nullptr || aligned16(shared));
  // Enough column blocks that every thread has one or two groups of columns.
  const int64_t per_block = int64_t(kRowThreads) * (wide ? 4 : 1);
  const dim3 grid{unsigned(num_tokens), unsigned(std::min<int64_t>((hidden + per_block - 1) / per_block, 65535))};
  return launch_dependent(wide ? moe_combine_kernel<T, true> : moe_combine_kernel<T, false>, grid, dim3(kRowThreads), 0,
                          stream, y_perm, slot_pos, weights, shared, out, top_k, hidden);
}

}  // namespace

cudaError_t launch_moe_gather_f32(const float* x, const int32_t* sorted_slots, float* x_perm, int64_t num_positions,
                                  int32_t top_k, int64_t hidden, cudaStream_t stream) {
  return launch_gather(x, sorted_slots, x_perm, num_positions, top_k, hidden, stream);
}

cudaError_t launch_moe_gather_bf16(const uint16_t* x, const int32_t* sorted_slots, uint16_t* x_perm,
                                   int64_t num_positions, int32_t top_k, int64_t hidden, cudaStream_t stream) {
  return launch_gather(x, sorted_slots, x_perm, num_positions, top_k, hidden, stream);
}

cudaError_t launch_moe_combine_f32(const float* y_perm, const int32_t* slot_pos, const float* weights,
                                   const float* shared, float* out, int64_t num_tokens, int32_t top_k, int64_t hidden,
                                   cudaStream_t stream) {
  return launch_combine(y_perm, slot_pos, weights, shared, out, num_tokens, top_k, hidden, stream);
}

cudaError_t launch_moe_combine_bf16(const uint16_t* y_perm, const int32_t* slot_pos, const float* weights,
                                    const float* shared, float* out, int64_t num_tokens, int32_t top_k,
                                    int64_t hidden, cudaStream_t stream) {
  return launch_combine(reinterpret_cast<const __nv_bfloat16*>(y_perm), slot_pos, weights, shared, out, num_tokens,
                        top_k, hidden, stream);
}

}  // namespace troupe::kernels
