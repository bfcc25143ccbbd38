// moe_segment_quant.hpp's kernels: one warp per (row, K block); lane l holds channels l, l + 32,
// l + 64 and l + 96 of the block (fp8_quant.cu's arrangement, so the same amax and roundings).
#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include "kernels/cuda_common.cuh"
#include "kernels/fp8_quant.hpp"
#include "kernels/moe_segment_quant.hpp"

namespace troupe::kernels {
namespace {

constexpr int kWarpsPerBlock = 8;

__device__ __forceinline__ float load_x(const float* p) { return *p; }
__device__ __forceinline__ float load_x(const uint16_t* p) { return __uint_as_float(uint32_t(*p) << 16); }

// The segment holding position p: the last e with offsets[e] <= p (empty segments before it share
// its offset and are passed over).
__device__ __forceinline__ int32_t segment_of(const int32_t* offsets, int32_t num_segments, int32_t p) {
  int32_t lo = 0, hi = num_segments;  // offsets[lo] <= p < offsets[hi]
  while (hi - lo > 1) {
    const int32_t mid = (lo + hi) / 2;
    if (offsets[mid] <= p) lo = mid; else hi = mid;
  }
  return lo;
}

// Quantizes the warp's four values of K block kb of row p and writes them with the block's scale.
__device__ __forceinline__ void quantize_group(const float (&v)[4], int lane, int64_t p, int64_t kb, int64_t k,
                                               int64_t num_kb, const int32_t* offsets, int32_t num_segments,
                                               uint8_t* out_fp8, float* out_scale) {
  float amax = 0.0f;
#pragma unroll
  for (int j = 0; j < 4; ++j) amax = fmaxf(amax, fabsf(v[j]));
#pragma unroll
  for (int o = 16; o > 0; o /= 2) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
  amax = fmaxf(amax, kFp8MinAmax);
  const float inv = 448.0f / amax;
  const int64_t begin = kb * kFp8BlockSize;
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int64_t i = begin + lane + 32 * j;
    if (i < k) out_fp8[p * k + i] = uint8_t(__nv_cvt_float_to_fp8(v[j] * inv, __NV_SATFINITE, __NV_E4M3));
  }
  if (lane == 0) {
    const int32_t e = segment_of(offsets, num_segments, int32_t(p));
    const int64_t first = offsets[e], count = offsets[e + 1] - first;
    out_scale[num_kb * first + kb * count + (p - first)] = amax / 448.0f;
  }
}

template <typename XT>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    moe_gather_quant_kernel(const XT* __restrict__ x, const int32_t* __restrict__ sorted_slots, int32_t top_k,
                            const int32_t* __restrict__ offsets, int32_t num_segments, uint8_t* __restrict__ x_fp8,
                            float* __restrict__ x_scale, int64_t num_positions, int64_t k, int64_t num_kb) {
  const int64_t group = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (group >= num_positions * num_kb) return;
  const int lane = int(threadIdx.x % 32);
  const int64_t p = group / num_kb, kb = group % num_kb;
  const XT* row = x + int64_t(sorted_slots[p] / top_k) * k;
  float v[4];
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int64_t i = kb * kFp8BlockSize + lane + 32 * j;
    v[j] = i < k ? load_x(row + i) : 0.0f;
  }
  quantize_group(v, lane, p, kb, k, num_kb, offsets, num_segments, x_fp8, x_scale);
}

__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    moe_silu_quant_kernel(const __nv_bfloat16* __restrict__ gate_up, const int32_t* __restrict__ offsets,
                          int32_t num_segments, uint8_t* __restrict__ act_fp8, float* __restrict__ act_scale,
                          int64_t num_positions, int64_t inter, int64_t num_kb) {
  const int64_t group = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (group >= num_positions * num_kb) return;
  const int lane = int(threadIdx.x % 32);
  const int64_t p = group / num_kb, kb = group % num_kb;
  const __nv_bfloat16* row = gate_up + p * 2 * inter;
  float v[4];
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int64_t i = kb * kFp8BlockSize + lane + 32 * j;
    if (i < inter) {
      const float g = __bfloat162float(row[i]), u = __bfloat162float(row[inter + i]);
      // mlp_activation.cu's formula and bf16 rounding, then widened for the quantization.
      v[j] = __bfloat162float(__float2bfloat16_rn(g / (1.0f + expf(-g)) * u));
    } else {
      v[j] = 0.0f;
    }
  }
  quantize_group(v, lane, p, kb, inter, num_kb, offsets, num_segments, act_fp8, act_scale);
}

bool bad_args(int64_t num_positions, int64_t k, int32_t num_segments) {
  return num_positions < 0 || k <= 0 || num_segments < 1 || bad_rows(num_positions);
}

unsigned warp_blocks(int64_t num_positions, int64_t num_kb) {
  return unsigned((num_positions * num_kb + kWarpsPerBlock - 1) / kWarpsPerBlock);
}

template <typename XT>
cudaError_t launch_gather(const XT* x, const int32_t* sorted_slots, int32_t top_k, const int32_t* offsets,
                          int32_t num_segments, uint8_t* x_fp8, float* x_scale, int64_t num_positions, int64_t k,
                          cudaStream_t stream) {
  if (bad_args(num_positions, k, num_segments) || top_k < 1) return cudaErrorInvalidValue;
  if (num_positions == 0) return cudaSuccess;
  const int64_t num_kb = fp8_num_blocks(k);
  if ((num_positions * num_kb + kWarpsPerBlock - 1) / kWarpsPerBlock > INT32_MAX) return cudaErrorInvalidValue;
  moe_gather_quant_kernel<<<warp_blocks(num_positions, num_kb), kWarpsPerBlock * 32, 0, stream>>>(
      x, sorted_slots, top_k, offsets, num_segments, x_fp8, x_scale, num_positions, k, num_kb);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_moe_gather_quant(const float* x, const int32_t* sorted_slots, int32_t top_k,
                                    const int32_t* offsets, int32_t num_segments, uint8_t* x_fp8, float* x_scale,
                                    int64_t num_positions, int64_t k, cudaStream_t stream) {
  return launch_gather(x, sorted_slots, top_k, offsets, num_segments, x_fp8, x_scale, num_positions, k, stream);
}

cudaError_t launch_moe_gather_quant(const uint16_t* x, const int32_t* sorted_slots, int32_t top_k,
                                    const int32_t* offsets, int32_t num_segments, uint8_t* x_fp8, float* x_scale,
                                    int64_t num_positions, int64_t k, cudaStream_t stream) {
  return launch_gather(x, sorted_slots, top_k, offsets, num_segments, x_fp8, x_scale, num_positions, k, stream);
}

cudaError_t launch_moe_silu_quant(const uint16_t* gate_up, const int32_t* offsets, int32_t num_segments,
                                  uint8_t* act_fp8, float* act_scale, int64_t num_positions, int64_t inter,
                                  cudaStream_t stream) {
  if (bad_args(num_positions, inter, num_segments)) return cudaErrorInvalidValue;
  if (num_positions == 0) return cudaSuccess;
  const int64_t num_kb = fp8_num_blocks(inter);
  if ((num_positions * num_kb + kWarpsPerBlock - 1) / kWarpsPerBlock > INT32_MAX) return cudaErrorInvalidValue;
  moe_silu_quant_kernel<<<warp_blocks(num_positions, num_kb), kWarpsPerBlock * 32, 0, stream>>>(
      reinterpret_cast<const __nv_bfloat16*>(gate_up), offsets, num_segments, act_fp8, act_scale, num_positions,
      inter, num_kb);
  return cudaGetLastError();
}

}  // namespace troupe::kernels
